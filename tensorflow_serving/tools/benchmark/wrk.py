"""REST load with wrk (`wrk -tT -cN`), the C client REST users measure with.

wrk posts one image's body on every request (a Lua script builds it: JSON,
or for the v2 binary extension JSON then the raw floats), warms up in a
first run and measures in a second. Every answer is checked in the script's
`response` hook: status 200, a `predictions` body (v2: a `data` array),
exactly `output_size` numbers, each within SCORE_TOLERANCE of the
in-process scores of that image (or, without them, of the first answer).
One image, because a wrk thread's hook cannot tell which of its
connections' requests a response answers; the Python clients round-robin
the test set instead.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import probes
from tensorflow_serving.tools.benchmark import stats
from tensorflow_serving.tools.benchmark import workload

# Filled in by script(): the body file, the path, the expected scores (a Lua
# table, or nil to learn them from the first answer) and the tolerance.
_SCRIPT = r"""
local body_path, path, headers, marker, expected, tolerance, size = %(args)s
local request_bytes
local threads = {}
-- Globals, so that done() can read each thread's with thread:get().
bad_status, malformed, wrong = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(body_path, "rb"))
  local body = f:read("*a")
  f:close()
  request_bytes = wrk.format("POST", path, headers, body)
end

function request()
  return request_bytes
end

function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
    return
  end
  -- The scores are the numbers in the first [...] after the marker.
  local at = string.find(body, marker, 1, true)
  local open = at and string.find(body, "[", at, true)
  local close = open and string.find(body, "]", open, true)
  if not close then
    malformed = malformed + 1
    return
  end
  local values, k = {}, 0
  local scores = string.sub(body, open, close)
  for token in string.gmatch(scores, "%%-?%%d[%%d%%.eE%%+%%-]*") do
    k = k + 1
    values[k] = tonumber(token)
    if values[k] == nil or k > size then
      malformed = malformed + 1
      return
    end
  end
  if k ~= size then
    malformed = malformed + 1
    return
  end
  if expected == nil then
    expected = values
    return
  end
  for i = 1, size do
    if math.abs(values[i] - expected[i]) > tolerance then
      wrong = wrong + 1
      return
    end
  end
end

function done(summary, latency, requests)
  local counts = {bad_status = 0, malformed = 0, wrong = 0}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(counts) do
      counts[key] = counts[key] + (thread:get(key) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
      "WRK_JSON {\"requests\": %%d, \"duration_us\": %%d, \"connect\": %%d, " ..
      "\"read\": %%d, \"write\": %%d, \"timeout\": %%d, " ..
      "\"bad_status\": %%d, \"malformed\": %%d, \"wrong\": %%d, " ..
      "\"mean\": %%f, \"min\": %%d, \"p50\": %%d, \"p90\": %%d, " ..
      "\"p99\": %%d, \"max\": %%d}\n",
      summary.requests, summary.duration, e.connect, e.read, e.write,
      e.timeout, counts.bad_status, counts.malformed, counts.wrong,
      latency.mean, latency.min, latency:percentile(50),
      latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua_string(text: str) -> str:
  # JSON's string escapes for ASCII text are valid Lua.
  return json.dumps(text)


def script(
    body_path: str,
    path: str,
    headers: dict[str, str],
    marker: str,
    expected: list[float] | None,
    tolerance: float,
    size: int,
) -> str:
  """The Lua script; arguments are bound as literals (wrk passes none)."""
  table = (
      "nil"
      if expected is None
      else "{" + ", ".join(repr(float(v)) for v in expected) + "}"
  )
  header_table = (
      "{"
      + ", ".join(
          f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
      )
      + "}"
  )
  args = ", ".join(
      (
          _lua_string(body_path),
          _lua_string(path),
          header_table,
          _lua_string(marker),
          table,
          repr(tolerance),
          str(size),
      )
  )
  return _SCRIPT % {"args": args}


def run(
    config: load_config.LoadConfig,
    on_measure: Callable[[], None] | None = None,
) -> dict[str, Any]:
  """Warms up, then measures, with one wrk run each; returns the summary."""
  binary = shutil.which("wrk")
  if not binary:
    raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
  image = workload.load_images(config)[:1]
  expected = workload.load_expected(config, 1) if config.check else None
  with tempfile.TemporaryDirectory(prefix="load_test_wrk_") as tmp:
    body_path = os.path.join(tmp, "body.json")
    body, headers = workload.rest_request(config, image[0])
    with open(body_path, "wb") as f:
      f.write(body)
    script_path = os.path.join(tmp, "predict.lua")
    with open(script_path, "w", encoding="utf-8") as f:
      f.write(
          script(
              body_path,
              config.rest_path,
              headers,
              '"predictions"' if config.api == "predict" else '"data"',
              None if expected is None else expected[0].tolist(),
              load_config.SCORE_TOLERANCE,
              config.output_size,
          )
      )

    def wrk_run(seconds: float) -> dict[str, Any]:
      argv = [
          binary,
          f"-t{config.processes}",
          f"-c{config.concurrency}",
          f"-d{max(1, round(seconds))}s",
          f"--timeout={max(1, round(config.timeout_s))}s",
          "-s",
          script_path,
          f"http://{config.server}{config.rest_path}",
      ]
      out = subprocess.run(
          argv,
          check=False,
          capture_output=True,
          text=True,
          timeout=seconds + config.timeout_s + 30,
      )
      if out.returncode:
        raise RuntimeError(
            f"wrk exited with {out.returncode}:\n{out.stdout}{out.stderr}"
        )
      for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
          return json.loads(line[len("WRK_JSON ") :])
      raise RuntimeError(f"wrk printed no summary:\n{out.stdout}{out.stderr}")

    if config.warmup_s > 0:
      wrk_run(config.warmup_s)
    probe = probes.ResourceProbe(config.server_pid, own=probes.children_cpu_s)
    probe.start()
    if on_measure is not None:
      on_measure()
    result = wrk_run(config.duration_s)
    cpu, server_cpu, threads, host = probe.stop()
  return summary(result, cpu, server_cpu, threads, host)


def summary(
    result: dict[str, Any],
    cpu: float,
    server_cpu: float | None,
    threads: list[tuple[str, float]] | None,
    host: dict[str, float] | None,
) -> dict[str, Any]:
  """The common summary from wrk's numbers (see the script's done())."""
  elapsed = result["duration_us"] / 1e6
  errors = {
      kind: result[kind]
      for kind in ("connect", "read", "write", "timeout", "malformed")
      if result[kind]
  }
  if result["bad_status"]:
    errors["HTTP non-200"] = result["bad_status"]
  if result["wrong"]:
    errors["wrong_answer"] = result["wrong"]
  # wrk counts a request once its response is complete, bad ones included;
  # socket errors (connect, read, ...) are requests that never completed.
  ok = max(
      0,
      result["requests"]
      - result["bad_status"]
      - result["malformed"]
      - result["wrong"],
  )
  return stats.summarize(
      ok=ok,
      errors=errors,
      elapsed_s=elapsed,
      throughput_rps=ok / elapsed if elapsed else 0.0,
      # wrk's histogram covers every response, including the few bad ones.
      latency=(
          {
              key: result[key] / 1e3
              for key in ("mean", "min", "p50", "p90", "p99", "max")
          }
          if result["requests"]
          else None
      ),
      loadgen_cpu_s=cpu,
      server_cpu_s=server_cpu,
      server_threads=threads,
      host=host,
  )
