// grpc-js (Node) against the grpc_h2 server: each check prints one JSON line
// {"check": name, "ok": bool, "detail": ...}; interop_test.py reads them.
// Usage: node interop_grpc_js.js 127.0.0.1:PORT
'use strict';
const grpc = require('@grpc/grpc-js');

const target = process.argv[2];
const identity = (b) => b;
const Client = grpc.makeGenericClientConstructor({
  Echo: {
    path: '/test.Echo/Echo', requestStream: false, responseStream: false,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  },
  Slow: {
    path: '/test.Echo/Slow', requestStream: false, responseStream: false,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  },
}, 'Echo');
const options = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
};
const plain = new Client(target, grpc.credentials.createInsecure(), options);
const gzipped = new Client(target, grpc.credentials.createInsecure(),
    {...options, 'grpc.default_compression_algorithm': 2});

function report(check, ok, detail) {
  console.log(JSON.stringify({check, ok, detail}));
}

function call(client, method, payload, deadlineMs) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + deadlineMs);
    const c = client[method](payload, {deadline}, (err, reply) => {
      resolve({err, reply, call: c});
    });
  });
}

async function main() {
  let r = await call(plain, 'Echo', Buffer.from('hello'), 5000);
  report('echo', !r.err && r.reply.toString() === 'hello',
      r.err ? r.err.message : r.reply.toString());

  const big = Buffer.alloc(20 << 20, 7);
  r = await call(plain, 'Echo', big, 60000);
  report('20MB', !r.err && r.reply.equals(big),
      r.err ? r.err.message : r.reply.length);

  const text = Buffer.from('z'.repeat(100000));
  r = await call(gzipped, 'Echo', text, 10000);
  report('gzip', !r.err && r.reply.equals(text),
      r.err ? r.err.message : r.reply.length);

  r = await call(plain, 'Slow', Buffer.from('5'), 300);
  report('deadline', !!r.err && r.err.code === grpc.status.DEADLINE_EXCEEDED,
      r.err ? r.err.code : 'no error');

  const cancelled = await new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    const c = plain.Slow(Buffer.from('5'), {deadline}, (err) => resolve(err));
    setTimeout(() => c.cancel(), 200);
  });
  report('cancel', !!cancelled && cancelled.code === grpc.status.CANCELLED,
      cancelled ? cancelled.code : 'no error');

  const many = await Promise.all(Array.from({length: 100}, (_, i) =>
    call(plain, 'Echo', Buffer.from(String(i)), 20000)));
  const good = many.filter((m, i) => !m.err && m.reply.toString() === String(i));
  report('100 concurrent', good.length === 100, good.length);

  plain.close();
  gzipped.close();
}

main().catch((e) => { report('script', false, String(e)); process.exit(1); });
