"""The `GET /v1/status` document: the live config, each version's state, the
signatures of what is loaded, and the traffic history, as one JSON object.

Everything comes from what the server already keeps: ServerCore's config and
labels, each version's state as the model view gives it (GetModelStatus's
answer: under --num_workers, every worker's), servable handles (held only
while reading a version's signatures), and the Prometheus metrics, through
`history`. When each version changed state is this process's own record (its
ServableStateMonitor): the workers agree on states, not on instants. Field by
field, the schema is in docs/monitoring.md ("GET /v1/status").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from typing import Any

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.batching import batching_session
from tensorflow_serving.core import servable_request
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.model_servers.status_page import history
from tensorflow_serving.model_servers.status_page import server_facts
from tensorflow_serving.servables.tensorflow import tflite_bundle
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

_State = get_model_status_pb2.ModelVersionStatus.State
Statuses = Mapping[str, get_model_status_pb2.GetModelStatusResponse]


def build(
    core: server_core_lib.ServerCore,
    statuses: Statuses,
    points: Sequence[history.Point],
    facts: server_facts.ServerFacts,
    now_s: float,
    period_s: float,
    window_s: float,
) -> dict[str, Any]:
  """The whole status document, as JSON-ready Python values."""
  config = core.config
  model_configs = list(config.model_config_list.config)
  names = [m.name for m in model_configs]
  # Totals since start: one more reading of the request counters, now.
  totals = history.read_request_counts(names)
  pools = sorted({p for point in points for p in point.pools})
  return {
      "server": facts.to_json(now_s),
      "time": round(now_s, 3),
      "history": {
          "period_s": period_s,
          "window_s": window_s,
          "t": [round(p.wall_s, 3) for p in points],
      },
      "traffic": _traffic(history.ALL_MODELS, points, totals),
      "models": [
          {
              **_model_json(core, m, statuses.get(m.name)),
              "traffic": _traffic(m.name, points, totals),
          }
          for m in model_configs
      ],
      "batching": [_pool_json(name, points) for name in pools],
  }


def _model_json(
    core: server_core_lib.ServerCore,
    model,
    response: get_model_status_pb2.GetModelStatusResponse | None,
) -> dict[str, Any]:
  platform = model.model_platform or server_core_lib.TENSORFLOW_PLATFORM
  policy = _policy_json(model)
  labels = {}
  for label in sorted(model.version_labels):
    try:
      labels[label] = core.version_for_label(model.name, label)
    except status.ServingError:
      labels[label] = None  # In the config file, not (yet) applied.
  here = core.monitor.get_version_states(model.name)
  versions = [
      _version_json(core, model.name, entry, here.get(entry.version))
      for entry in (response.model_version_status if response else ())
  ]
  return {
      "name": model.name,
      "base_path": model.base_path,
      "model_platform": platform,
      "version_policy": policy,
      "labels": labels,
      "versions": versions,
  }


def _policy_json(model) -> dict[str, Any]:
  """The version policy as configured; none configured means latest 1."""
  policy = model.model_version_policy
  choice = policy.WhichOneof("policy_choice")
  if choice == "all":
    return {"all": {}}
  if choice == "specific":
    return {"specific": {"versions": sorted(policy.specific.versions)}}
  if choice == "latest":
    return {"latest": {"num_versions": policy.latest.num_versions}}
  return {"latest": {"num_versions": 1}}


def _version_json(
    core: server_core_lib.ServerCore,
    name: str,
    entry: get_model_status_pb2.ModelVersionStatus,
    state_and_time,
) -> dict[str, Any]:
  """One version: its state from the view, since when from this process.

  `state_and_time` is this process's monitor entry (None when this worker
  has not seen the version yet).
  """
  available = entry.state == _State.AVAILABLE
  since = None
  if state_and_time is not None:
    since = round(state_and_time.event_time_micros / 1e6, 3)
  out: dict[str, Any] = {
      "version": entry.version,
      "state": _State.Name(entry.state),
      "since": since,
      "loaded_at": since if available else None,
      "error": None,
      "platform": None,
      "batching": None,
      "signatures": None,
  }
  local = None if state_and_time is None else state_and_time.state
  if (
      local is not None
      and local.health is not None
      and local.manager_state.name == out["state"]
  ):
    # This process's own record keeps the code of a load being retried,
    # which GetModelStatus words as LOADING with code OK.
    out["error"] = {
        "code": local.health.code.name,
        "message": local.health.message,
    }
  elif entry.status.error_message:
    out["error"] = {
        "code": status.Code(entry.status.error_code).name,
        "message": entry.status.error_message,
    }
  if available:
    out.update(_servable_json(core, name, entry.version))
  return out


def _servable_json(
    core: server_core_lib.ServerCore, name: str, version: int
) -> dict[str, Any]:
  """Platform, batching and signatures, read through a servable handle."""
  try:
    handle = core.manager.get_servable_handle(
        servable_request.ServableRequest.specific(name, version)
    )
  except status.ServingError:
    return {}  # Unloading since the monitor said AVAILABLE.
  with handle:
    bundle = handle.servable
    batching = None
    inner = bundle
    while isinstance(inner, batching_session.BatchingBundle):
      batching = {"thread_pool_name": inner.options.thread_pool_name}
      inner = inner.inner
    platform = (
        "TF Lite"
        if isinstance(inner, tflite_bundle.TfLiteBundle)
        else "SavedModel"
    )
    signatures = [
        _signature_json(sig)
        for _, sig in sorted(getattr(bundle, "signatures", {}).items())
    ]
  return {"platform": platform, "batching": batching, "signatures": signatures}


def _signature_json(sig) -> dict[str, Any]:
  return {
      "key": sig.key,
      "method_name": sig.method_name,
      "inputs": [_tensor_json(t) for _, t in sorted(sig.inputs.items())],
      "outputs": [_tensor_json(t) for _, t in sorted(sig.outputs.items())],
  }


def _tensor_json(spec) -> dict[str, Any]:
  return {
      "alias": spec.alias,
      "dtype": spec.dtype_name,
      "shape": None if spec.shape is None else list(spec.shape),
  }


def _traffic(
    name: str,
    points: Sequence[history.Point],
    totals: dict[str, dict[str, float]],
) -> dict[str, Any]:
  """One model's (or, for ALL_MODELS, every model's) series and totals."""
  own = [p.models.get(name) for p in points]
  codes = sorted({c for mp in own if mp for c in mp.errors_per_s})
  by_status = totals.get(name, {})
  return {
      "requests_per_s": [_num(mp.requests_per_s if mp else 0.0) for mp in own],
      "p50_ms": [_num(mp.p50_ms) if mp else None for mp in own],
      "p99_ms": [_num(mp.p99_ms) if mp else None for mp in own],
      "errors_per_s": {
          code: [
              _num(mp.errors_per_s.get(code, 0.0) if mp else 0.0) for mp in own
          ]
          for code in codes
      },
      "totals": {
          "requests": int(sum(by_status.values())),
          "by_status": {c: int(v) for c, v in sorted(by_status.items())},
      },
  }


def _pool_json(name: str, points: Sequence[history.Point]) -> dict[str, Any]:
  own = [p.pools.get(name) for p in points]
  counts = [0.0] * len(metrics.BATCH_SIZE_BUCKETS)
  for pp in own:
    for i, c in (pp.batch_size_counts.items() if pp else ()):
      counts[i] += c
  used = [i for i, c in enumerate(counts) if c]
  distribution = []
  if used:
    for i in range(used[-1] + 1):
      bound = metrics.BATCH_SIZE_BUCKETS[i]
      distribution.append(
          {
              "le": None if math.isinf(bound) else int(bound),
              "batches": round(counts[i]),
          }
      )
  return {
      "thread_pool_name": name,
      "batches_per_s": [_num(pp.batches_per_s if pp else 0.0) for pp in own],
      "mean_batch_size": [
          _num(pp.mean_batch_size) if pp else None for pp in own
      ],
      "batch_size_distribution": distribution,
  }


def _num(value: float | None) -> float | None:
  if value is None or not math.isfinite(value):
    return None
  return round(value, 3)
