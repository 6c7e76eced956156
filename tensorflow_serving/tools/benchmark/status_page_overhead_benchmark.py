"""What the status page costs a server that nobody is watching: an A/B.

Two servers run side by side on the same model, one with the page (the
default) and one with `--enable_status_page=false`. wrk, not our own client,
drives each in turn with short alternating runs, so drift on a shared machine
hits both alike. Per run: requests/s, wrk's p50 and p99, and the server's CPU
time per request (from /proc). It then times the two things the page adds
while unwatched: the REST handler's path check, and one reading of the
metrics by the history sampler at a few sizes of metric set.

    bazel run -c opt //tensorflow_serving/tools/benchmark:status_page_overhead_benchmark -- \
      --duration_s=3 --repeats=16 --connections=8
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

from absl import app
from absl import flags

from tensorflow_serving.model_servers.status_page import history
from tensorflow_serving.model_servers.status_page import routes
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.test_util import in_process
from tensorflow_serving.test_util import model_server
from tensorflow_serving.util import metrics

_DURATION_S = flags.DEFINE_integer("duration_s", 3, "Seconds per wrk run.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 16, "Runs per server and workload, over the two rounds."
)
_CONNECTIONS = flags.DEFINE_integer("connections", 8, "wrk connections.")
_OFF_FLAGS = flags.DEFINE_list(
    "off_flags",
    ["--enable_status_page=false"],
    "Flags of the second server. Empty: an A/A run of two identical servers "
    "(both with the page), which shows this machine's noise.",
)
_WORKLOADS = flags.DEFINE_list(
    "workloads",
    ["predict", "status"],
    "predict: POST :predict (decoded on the event loop); status: GET "
    "/v1/models/half (answered from a worker thread).",
)

_PREDICT_LUA = """
wrk.method = "POST"
wrk.body = '{"instances": [1.0, 2.0, 5.0]}'
wrk.headers["Content-Type"] = "application/json"
"""
_PATHS = {"predict": "/v1/models/half:predict", "status": "/v1/models/half"}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _ms(text: str) -> float:
  value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
  return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _wrk(url: str, lua: str | None) -> dict[str, float]:
  argv = [
      "wrk",
      "-t1",
      f"-c{_CONNECTIONS.value}",
      f"-d{_DURATION_S.value}s",
      "--latency",
  ]
  if lua:
    argv += ["-s", lua]
  out = subprocess.run(
      argv + [url], capture_output=True, text=True, check=True
  ).stdout
  latency = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)$", out, re.M))
  errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
  return {
      "requests": int(re.search(r"(\d+) requests in", out).group(1)),
      "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
      "p50_ms": _ms(latency["50"]),
      "p99_ms": _ms(latency["99"]),
      "errors": int(errors.group(1)) if errors else 0,
  }


def _sampler_cost() -> list[tuple[str, float, float, float]]:
  """Microseconds per reading (idle, busy), for metric sets of a few sizes.

  Busy: every latency series got a new observation since the last reading;
  idle: none did (the history cache then skips their buckets). Last, what
  prometheus_client's public collect() of the same metrics costs.
  """
  out = []
  for models, codes in ((2, 2), (20, 3), (100, 4)):
    metrics.reset_for_test()
    m = metrics.get()
    names = [f"model{i}" for i in range(models)]
    series = []
    for name in names:
      for code in ("OK", "NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE")[
          :codes
      ]:
        m.request_count.labels(name, code).inc()
      for api in ("predict", "classify"):
        for entrypoint in ("GRPC", "REST"):
          series.append(m.request_latency.labels(name, api, entrypoint))
    m.batching_input_batch_size.labels("pool").observe(4)
    cache = history.HistogramCache()
    costs = []
    for busy in (False, True):
      n, spent = 100, 0.0
      for i in range(n):
        if busy:
          for child in series:
            child.observe(500)
        start = time.perf_counter()
        history.read(names, float(i), float(i), cache)
        spent += time.perf_counter() - start
      costs.append(spent / n * 1e6)
    start = time.perf_counter()
    for _ in range(20):
      for metric in (
          m.request_count,
          m.request_latency,
          m.batching_input_batch_size,
      ):
        list(metric.collect())
    costs.append((time.perf_counter() - start) / 20 * 1e6)
    out.append((f"{models} models, {len(series)} latency series", *costs))
  return out


_ON = "page on"


def _second() -> str:
  """The second server's name: the page off, or a twin (an A/A run)."""
  return " ".join(_OFF_FLAGS.value) or "page on, twin"


def _measure(root: str, lua: str, base: str) -> list[tuple[Any, ...]]:
  """(round, workload, server, run, result) for every wrk run."""
  common = ["--model_name=half", f"--model_base_path={base}"]
  args = {_ON: common, _second(): [*common, *_OFF_FLAGS.value]}
  rows = []
  # Two rounds with the servers started in opposite orders: on this machine
  # the first-started of two identical servers measured up to 12% slower (an
  # A/A run), which alternating runs alone do not cancel.
  for round_, start_order in enumerate(
      ((_ON, _second()), (_second(), _ON)), start=1
  ):
    servers = {
        variant: model_server.start_server(args[variant], log_dir=root)
        for variant in start_order
    }
    try:
      for server in servers.values():
        server.wait_until_serving()
      for workload in _WORKLOADS.value:
        path = _PATHS[workload]
        for repeat in range(max(1, _REPEATS.value // 2)):
          order = list(servers)
          if repeat % 2:
            order.reverse()
          for variant in order:
            server = servers[variant]
            before = _cpu_s(server.proc.pid)
            result = _wrk(
                server.rest_url + path, lua if workload == "predict" else None
            )
            cpu = _cpu_s(server.proc.pid) - before
            result["cpu_us"] = cpu / max(1, result["requests"]) * 1e6
            rows.append((round_, workload, variant, repeat + 1, result))
    finally:
      for server in servers.values():
        server.stop()
  return rows


def _report(rows: list[tuple[Any, ...]]) -> None:
  print(
      f"\nwrk -t1 -c{_CONNECTIONS.value} -d{_DURATION_S.value}s, "
      "alternating runs, two rounds (servers started in opposite orders)\n"
  )
  print(
      "| round | workload | server | run | req/s | p50 ms | p99 ms | "
      "server CPU us/req | non-2xx |"
  )
  print("|---|---|---|---|---|---|---|---|---|")
  for round_, workload, variant, run, r in rows:
    print(
        f"| {round_} | {workload} | {variant} | {run} | {r['rps']:.0f} | "
        f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us']:.0f} | "
        f"{r['errors']} |"
    )
  # Interference from other work only ever adds time, so the best run of
  # each server is the steadier comparison on a shared machine.
  print(f"\n{_ON} / {_second()}, median and best run:")
  for workload in _WORKLOADS.value:
    for key, best in (
        ("rps", max),
        ("p50_ms", min),
        ("p99_ms", min),
        ("cpu_us", min),
    ):
      on, off = (
          [r[key] for _, w, v, _, r in rows if w == workload and v == variant]
          for variant in (_ON, _second())
      )
      med_on, med_off = statistics.median(on), statistics.median(off)
      print(
          f"  {workload:8s} {key:7s} median {med_on:9.2f} / {med_off:9.2f}"
          f" = {med_on / med_off:.3f}   best {best(on):9.2f} /"
          f" {best(off):9.2f} = {best(on) / best(off):.3f}"
      )


def main(argv):
  del argv
  root = tempfile.mkdtemp(prefix="status_overhead_")
  lua = os.path.join(root, "predict.lua")
  with open(lua, "w") as f:
    f.write(_PREDICT_LUA)
  base = os.path.join(root, "half")
  half_plus_two.export_half_plus_two_tf1(os.path.join(base, "1"))
  _report(_measure(root, lua, base))
  # The one thing a REST request pays: the page's path check in the
  # handler (an empty loop of the same length is subtracted).
  n = 500_000
  status_page = routes.StatusPage(
      in_process.make_pipeline(in_process.FakeCore({}))
  )
  start = time.perf_counter()
  for _ in range(n):
    status_page.route("POST", "/v1/models/half:predict")
  spent = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(n):
    pass
  per = (spent - (time.perf_counter() - start)) / n * 1e9
  print(f"\nroute check on an API path: {per:.0f} ns per REST request")
  print("\nhistory sampler, one reading of the metrics (every 2 s):")
  for label, idle, busy, collect in _sampler_cost():
    print(
        f"  {label}: idle {idle:.0f} us, busy {busy:.0f} us "
        f"= {idle / 2e4:.4f}% / {busy / 2e4:.4f}% of one core "
        f"(prometheus_client collect(): {collect:.0f} us)"
    )
  shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
