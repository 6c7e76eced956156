"""Replays logged requests against a server at a chosen rate (gRPC or REST).

Each logged request is turned into its call once, before the clock starts
(the serialized gRPC request, or the REST path and JSON body it stands for),
then the calls are sent in log order, round and round, at --rate requests
per second (0: as fast as --max_in_flight allows) for --duration seconds or
--max_requests calls. The report is the benchmark's summary
(tools/benchmark/stats.summarize: throughput, latency percentiles, errors by
status, the generator's own CPU) plus how many sends were late because
--max_in_flight calls were outstanding.

MultiInference has no REST API: over REST those records are skipped, and
counted.
"""

from __future__ import annotations

import asyncio
import base64
import collections
from collections.abc import Iterable, Sequence
import dataclasses
import time
from typing import Any
import urllib.parse

import grpc
import numpy as np
import orjson

from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.tools.benchmark import stats

_GRPC_METHODS = {
    "predict_log": "/tensorflow.serving.PredictionService/Predict",
    "classify_log": "/tensorflow.serving.PredictionService/Classify",
    "regress_log": "/tensorflow.serving.PredictionService/Regress",
    "multi_inference_log": (
        "/tensorflow.serving.PredictionService/MultiInference"
    ),
}
_REST_VERBS = {
    "predict_log": "predict",
    "classify_log": "classify",
    "regress_log": "regress",
}


@dataclasses.dataclass(frozen=True)
class Call:
  """One request ready to send: a gRPC method and body, or a REST path."""

  path: str
  body: bytes


def _json_strings(values: np.ndarray, as_b64: bool) -> Any:
  """String tensors as upstream's REST JSON: text, or {"b64": ...}."""

  def one(value: bytes) -> Any:
    if not as_b64:
      try:
        return value.decode("utf-8")
      except UnicodeDecodeError:
        pass
    return {"b64": base64.b64encode(value).decode("ascii")}

  def walk(value: Any) -> Any:
    return [walk(v) for v in value] if isinstance(value, list) else one(value)

  return walk(values.tolist())


def _json_tensor(alias: str, proto: Any) -> Any:
  value = tensor_codec.tensor_proto_to_ndarray(proto)
  if value.dtype == object or value.dtype.kind == "S":
    return _json_strings(value, alias.endswith("_bytes"))
  return value.tolist()


def _json_feature(feature: Any) -> Any:
  kind = feature.WhichOneof("kind")
  if kind is None:
    return []
  values = list(getattr(feature, kind).value)
  if kind == "bytes_list":
    return [_json_strings(np.asarray(v, dtype=object), False) for v in values]
  return values


def _json_examples(request_input: Any) -> list[dict[str, Any]]:
  kind = request_input.WhichOneof("kind")
  if kind is None:
    return []
  return [
      {
          name: _json_feature(feature)
          for name, feature in example.features.feature.items()
      }
      for example in getattr(request_input, kind).examples
  ]


def _rest_call(kind: str, request: Any) -> Call:
  spec = request.model_spec
  path = f"/v1/models/{urllib.parse.quote(spec.name, safe='')}"
  if spec.WhichOneof("version_choice") == "version":
    path += f"/versions/{spec.version.value}"
  elif spec.WhichOneof("version_choice") == "version_label":
    path += f"/labels/{urllib.parse.quote(spec.version_label, safe='')}"
  path += f":{_REST_VERBS[kind]}"
  doc: dict[str, Any] = {}
  if spec.signature_name:
    doc["signature_name"] = spec.signature_name
  if kind == "predict_log":
    doc["inputs"] = {
        alias: _json_tensor(alias, proto)
        for alias, proto in request.inputs.items()
    }
  else:
    doc["examples"] = _json_examples(request.input)
  return Call(path, orjson.dumps(doc))


def calls_from_logs(
    logs: Iterable[prediction_log_pb2.PredictionLog],
    protocol: str,
    model_name: str | None = None,
    keep_version: bool = False,
) -> tuple[list[Call], collections.Counter]:
  """The calls to replay, and `reason -> count` of records left out.

  `model_name` sends every call to that model; unless `keep_version`, calls
  go to the model's latest version rather than the one logged.
  """
  calls: list[Call] = []
  skipped: collections.Counter = collections.Counter()
  for log in logs:
    kind = log.WhichOneof("log_type")
    if kind not in _GRPC_METHODS:
      skipped[f"{kind}: not replayable"] += 1
      continue
    request = getattr(log, kind).request
    request = type(request).FromString(request.SerializeToString())
    specs = (
        [t.model_spec for t in request.tasks]
        if kind == "multi_inference_log"
        else [request.model_spec]
    )
    for spec in specs:
      if model_name:
        spec.name = model_name
      if not keep_version:
        spec.ClearField("version_choice")
    if protocol == "grpc":
      calls.append(Call(_GRPC_METHODS[kind], request.SerializeToString()))
    elif kind in _REST_VERBS:
      calls.append(_rest_call(kind, request))
    else:
      skipped[f"{kind}: no REST API"] += 1
  return calls, skipped


class _GrpcSender:

  def __init__(self, target: str, timeout_s: float):
    self._channel = grpc.aio.insecure_channel(target)
    self._timeout_s = timeout_s
    self._stubs: dict[str, Any] = {}

  async def send(self, call: Call) -> str:
    stub = self._stubs.get(call.path)
    if stub is None:
      stub = self._stubs[call.path] = self._channel.unary_unary(call.path)
    try:
      await stub(call.body, timeout=self._timeout_s)
    except grpc.aio.AioRpcError as exc:
      return exc.code().name
    return "OK"

  async def close(self) -> None:
    await self._channel.close()


class _RestSender:

  def __init__(self, target: str, timeout_s: float):
    import aiohttp  # pylint: disable=g-import-not-at-top

    self._base = target if "://" in target else f"http://{target}"
    self._session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s)
    )
    self._timeout_error = asyncio.TimeoutError
    self._client_error = aiohttp.ClientError

  async def send(self, call: Call) -> str:
    try:
      async with self._session.post(
          self._base + call.path,
          data=call.body,
          headers={"Content-Type": "application/json"},
      ) as response:
        await response.read()
        return "OK" if response.status == 200 else f"HTTP {response.status}"
    except self._timeout_error:
      return "timeout"
    except self._client_error as exc:
      return type(exc).__name__

  async def close(self) -> None:
    await self._session.close()


async def replay(
    calls: Sequence[Call],
    protocol: str,
    target: str,
    rate: float,
    duration_s: float,
    max_requests: int,
    max_in_flight: int = 64,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
  """Sends `calls` in a loop; the benchmark's summary plus `late_sends`."""
  if not calls:
    raise ValueError("nothing to replay")
  if duration_s <= 0 and max_requests <= 0:
    raise ValueError("give a duration or a maximum number of requests")
  sender = (
      _GrpcSender(target, timeout_s)
      if protocol == "grpc"
      else _RestSender(target, timeout_s)
  )
  latencies: list[float] = []
  errors: collections.Counter = collections.Counter()
  slots = asyncio.Semaphore(max_in_flight)
  tasks: set[asyncio.Task] = set()
  late = 0

  async def one(call: Call) -> None:
    try:
      start = time.perf_counter()
      outcome = await sender.send(call)
      if outcome == "OK":
        latencies.append(time.perf_counter() - start)
      else:
        errors[outcome] += 1
    finally:
      slots.release()

  cpu_start = time.process_time()
  start = time.perf_counter()
  sent = 0
  try:
    while True:
      if max_requests and sent >= max_requests:
        break
      now = time.perf_counter()
      if duration_s > 0 and now - start >= duration_s:
        break
      if rate > 0:
        due = start + sent / rate
        if due > now:
          await asyncio.sleep(due - now)
      if slots.locked():
        late += 1
      await slots.acquire()
      task = asyncio.create_task(one(calls[sent % len(calls)]))
      tasks.add(task)
      task.add_done_callback(tasks.discard)
      sent += 1
    if tasks:
      await asyncio.wait(list(tasks), timeout=timeout_s)
  finally:
    for task in tasks:
      task.cancel()
    await sender.close()
  elapsed = time.perf_counter() - start
  latencies.sort()
  summary = stats.summarize(
      ok=len(latencies),
      errors=dict(errors),
      elapsed_s=elapsed,
      throughput_rps=len(latencies) / elapsed if elapsed > 0 else 0.0,
      latency=stats.latency_ms(latencies),
      loadgen_cpu_s=time.process_time() - cpu_start,
      server_cpu_s=None,
      server_threads=None,
      host=None,
  )
  summary["target_rate_rps"] = rate
  summary["late_sends"] = late
  return summary


def format_summary(summary: dict[str, Any], protocol: str, target: str) -> str:
  lines = [
      f"replay: {protocol} {target}, target "
      + (
          f"{summary['target_rate_rps']:g} req/s"
          if summary["target_rate_rps"]
          else "as fast as possible"
      ),
      f"  window      {summary['elapsed_s']:.2f} s",
      f"  requests    {summary['requests']} ({summary['ok']} ok, "
      f"{summary['errors']} errors), {summary['late_sends']} sent late",
  ]
  if summary["errors_by_status"]:
    lines.append(
        "  errors      "
        + ", ".join(f"{k}: {v}" for k, v in summary["errors_by_status"].items())
    )
  lines.append(f"  throughput  {summary['throughput_rps']:.1f} req/s")
  latency = summary["latency_ms"]
  if latency:
    lines.append(
        "  latency ms  "
        + "  ".join(
            f"{key} {latency[key]:.2f}"
            for key in ("p50", "p90", "p99", "max", "mean")
        )
    )
  cpu = summary["loadgen_cpu_pct"]
  if cpu is not None:
    lines.append(f"  loadgen CPU {cpu:.1f}% of one core")
  return "\n".join(lines)
