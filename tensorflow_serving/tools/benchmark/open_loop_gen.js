// Open-loop (and closed-loop) Predict load from one cheap Node.js process.
//
// A Python client spends a core on a few thousand calls a second, so it
// cannot offer a server several times its capacity from a 2-core host; Node's
// http2 and http modules (nghttp2 and llhttp underneath) cost a few
// microseconds a call. Only built-in modules are used.
//
// Usage: node open_loop_gen.js CONFIG_JSON
//
// CONFIG_JSON names:
//   protocol     "grpc" (HTTP/2, pre-framed PredictRequest bodies) or "rest"
//                (HTTP/1.1 keep-alive, JSON bodies)
//   host, port, path
//   bodies       file of bodies, each a 4-byte big-endian length + bytes
//   mode         "open": call i is due at start + i / rate, whatever the
//                answers; "closed": `concurrency` loops, each sending its
//                next call when the last one is answered
//   rate, duration_s, concurrency, warmup_s (closed: not recorded)
//   deadline_ms  each call's deadline, counted from when it was due:
//                grpc-timeout carries what is left of it when sent; at the
//                deadline the client gives up (RST_STREAM CANCEL, or the
//                HTTP/1.1 connection is closed), as a real client does
//                (0: no deadline, closed mode only)
//   connections  gRPC: HTTP/2 connections the calls are spread over;
//                REST: most sockets open at once
//   records      output file: one line per call,
//                "due_us lag_us latency_us outcome", where lag is how late
//                the call left after it was due (the client falling behind,
//                or, for REST, waiting for a free socket past `connections`)
//                and latency runs from due to the answer
//
// Outcomes: ok, shed (UNAVAILABLE / 503 carrying a retry hint), shed_nohint
// (the same without one), deadline (DEADLINE_EXCEEDED / 504 / 408),
// timeout (the client's own deadline passed first), grpc_N, http_N, bad
// (answered OK without a body), net_ERRCODE, client_full (not sent: every
// HTTP/2 connection had as many calls open as the server allows).
//
// On exit it prints one JSON line: the client's CPU seconds and counts.

'use strict';

const fs = require('fs');
const http = require('http');
const http2 = require('http2');

function readBodies(path) {
  const data = fs.readFileSync(path);
  const bodies = [];
  for (let at = 0; at < data.length;) {
    const size = data.readUInt32BE(at);
    bodies.push(data.subarray(at + 4, at + 4 + size));
    at += 4 + size;
  }
  if (!bodies.length) throw new Error(`no bodies in ${path}`);
  return bodies;
}

function nowUs() {
  return Number(process.hrtime.bigint() / 1000n);
}

// One call on one of the HTTP/2 connections; done(outcome) once.
function grpcSender(cfg, bodies) {
  const sessions = [];
  for (let i = 0; i < cfg.connections; i++) {
    const session = http2.connect(`http://${cfg.host}:${cfg.port}`, {
      settings: {initialWindowSize: 1 << 20},
    });
    session.on('error', () => {});
    sessions.push(session);
  }
  const inFlight = sessions.map(() => 0);
  let next = 0;
  // The next connection with a free stream under the server's
  // MAX_CONCURRENT_STREAMS, or -1: a call beyond them would wait inside
  // the client, unseen, so it is not sent and is recorded as `client_full`.
  const pick = () => {
    for (let tries = 0; tries < sessions.length; tries++) {
      const i = next;
      next = (next + 1) % sessions.length;
      const limit = sessions[i].remoteSettings ? sessions[i].remoteSettings.maxConcurrentStreams : 100;
      if (inFlight[i] < limit) return i;
    }
    return -1;
  };
  const send = (index, remainingMs, done, wired) => {
    const slot = pick();
    if (slot < 0) {
      done('client_full');
      return () => {};
    }
    const session = sessions[slot];
    inFlight[slot]++;
    const headers = {
      ':method': 'POST',
      ':path': cfg.path,
      'content-type': 'application/grpc',
      'te': 'trailers',
    };
    if (remainingMs > 0) headers['grpc-timeout'] = `${Math.max(1, Math.floor(remainingMs))}m`;
    let stream;
    try {
      stream = session.request(headers);
    } catch (err) {
      done(`net_${err.code || 'request'}`);
      return () => {};
    }
    let grpcStatus = null;
    let hint = false;
    let bytes = 0;
    let finished = false;
    let open = true;
    const release = () => {
      if (open) {
        open = false;
        inFlight[slot]--;
      }
    };
    const finish = (outcome) => {
      release();
      if (finished) return;
      finished = true;
      done(outcome);
    };
    const readStatus = (h) => {
      if (h['grpc-status'] !== undefined) grpcStatus = Number(h['grpc-status']);
      if (h['grpc-retry-pushback-ms'] !== undefined) hint = true;
    };
    stream.on('response', readStatus);  // trailers-only answers end here
    stream.on('trailers', readStatus);
    stream.on('data', (chunk) => { bytes += chunk.length; });
    stream.on('error', (err) => finish(`net_${err.code || 'stream'}`));
    stream.on('close', () => {
      if (grpcStatus === null) finish(`net_${stream.rstCode === undefined ? 'closed' : 'rst' + stream.rstCode}`);
      else if (grpcStatus === 0) finish(bytes > 5 ? 'ok' : 'bad');
      else if (grpcStatus === 14) finish(hint ? 'shed' : 'shed_nohint');
      else if (grpcStatus === 4) finish('deadline');
      else finish(`grpc_${grpcStatus}`);
    });
    wired(nowUs());
    stream.end(bodies[index % bodies.length]);
    return () => {
      if (!finished) {
        finished = true;
        stream.close(http2.constants.NGHTTP2_CANCEL);  // 'close' releases
      }
    };
  };
  const close = () => sessions.forEach((s) => s.destroy());
  return {send, close};
}

function restSender(cfg, bodies) {
  const agent = new http.Agent({
    keepAlive: true,
    maxSockets: cfg.connections,
    maxFreeSockets: cfg.connections,
  });
  const send = (index, remainingMs, done, wired) => {
    const body = bodies[index % bodies.length];
    let finished = false;
    const finish = (outcome) => {
      if (finished) return;
      finished = true;
      done(outcome);
    };
    const req = http.request({
      agent,
      host: cfg.host,
      port: cfg.port,
      method: 'POST',
      path: cfg.path,
      headers: {'Content-Type': 'application/json', 'Content-Length': body.length},
    }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => { bytes += chunk.length; });
      res.on('end', () => {
        const code = res.statusCode;
        if (code === 200) finish(bytes > 0 ? 'ok' : 'bad');
        else if (code === 503) finish(res.headers['retry-after'] ? 'shed' : 'shed_nohint');
        else if (code === 504 || code === 408) finish('deadline');
        else finish(`http_${code}`);
      });
      res.on('error', (err) => finish(`net_${err.code || 'response'}`));
    });
    req.on('error', (err) => finish(`net_${err.code || 'request'}`));
    req.on('socket', () => wired(nowUs()));
    req.end(body);
    return () => {
      if (!finished) {
        finished = true;
        req.destroy();
      }
    };
  };
  const close = () => agent.destroy();
  return {send, close};
}

function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const bodies = readBodies(cfg.bodies);
  const sender = cfg.protocol === 'grpc' ? grpcSender(cfg, bodies) : restSender(cfg, bodies);
  const deadlineUs = cfg.deadline_ms * 1000;
  const lines = [];
  let outstanding = 0;
  let start = 0;
  let stopped = false;
  const cpuBefore = process.cpuUsage();

  // Sends call `index`, due at `dueUs`; calls after(…) when it is answered.
  const call = (index, dueUs, record, after) => {
    let lagUs = nowUs() - dueUs;
    outstanding++;
    let timer = null;
    // When the call is handed to a connection (REST: may wait for a socket).
    const wired = (atUs) => { lagUs = Math.max(lagUs, atUs - dueUs); };
    const done = (outcome) => {
      if (timer) clearTimeout(timer);
      outstanding--;
      if (record) lines.push(`${dueUs - start} ${lagUs} ${nowUs() - dueUs} ${outcome}`);
      if (after) after();
    };
    const remainingMs = deadlineUs ? (deadlineUs - lagUs) / 1000 : 0;
    if (deadlineUs && remainingMs <= 0) {
      // The client itself let the whole deadline pass before sending.
      outstanding--;
      if (record) lines.push(`${dueUs - start} ${lagUs} ${lagUs} timeout`);
      if (after) after();
      return;
    }
    const cancel = sender.send(index, remainingMs, done, wired);
    if (deadlineUs) {
      timer = setTimeout(() => {
        timer = null;
        cancel();
        done('timeout');
      }, remainingMs);
    }
  };

  const finish = () => {
    const waitEnd = () => {
      if (outstanding > 0) {
        setTimeout(waitEnd, 20);
        return;
      }
      sender.close();
      fs.writeFileSync(cfg.records, lines.length ? lines.join('\n') + '\n' : '');
      const cpu = process.cpuUsage(cpuBefore);
      console.log(JSON.stringify({
        calls: lines.length,
        cpu_s: (cpu.user + cpu.system) / 1e6,
      }));
    };
    waitEnd();
  };

  const begin = () => {
    start = nowUs();
    if (cfg.mode === 'open') {
      const count = Math.max(1, Math.round(cfg.rate * cfg.duration_s));
      const stepUs = 1e6 / cfg.rate;
      let index = 0;
      // Every turn sends whatever has fallen due; a timer per call would
      // cost more than the call.
      const tick = () => {
        const now = nowUs();
        while (index < count && start + index * stepUs <= now) {
          call(index, Math.round(start + index * stepUs), true, null);
          index++;
        }
        if (index < count) {
          // Never spin: a turn at most every millisecond sends all that is
          // due, and the CPU stays with the server.
          const waitMs = (start + index * stepUs - nowUs()) / 1000;
          setTimeout(tick, Math.max(1, Math.floor(waitMs)));
        } else {
          finish();
        }
      };
      tick();
    } else {
      const warmupUs = cfg.warmup_s * 1e6;
      const endUs = start + warmupUs + cfg.duration_s * 1e6;
      let index = 0;
      const loop = () => {
        if (stopped) return;
        const now = nowUs();
        if (now >= endUs) {
          stopped = true;
          finish();
          return;
        }
        call(index++, now, now >= start + warmupUs, () => setImmediate(loop));
      };
      for (let i = 0; i < cfg.concurrency; i++) loop();
    }
  };
  // Connections settle (HTTP/2 SETTINGS exchanged) before the clock starts.
  setTimeout(begin, 300);
}

main();
