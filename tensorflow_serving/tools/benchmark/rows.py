"""The comparison's rows: which server and API, which client, what it measured.

Shared by the driver (compare.py), the targets it judges (targets.py) and
its report (report.py).
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """One server setup: which server, which API, batching or not."""

  name: str
  server: str
  protocol: str
  batching: bool | None  # None: the server has no such option.
  # What the requests carry (load_config.APIS).
  api: str = "predict"
  # A peer server started from its own venv (peer_servers.py), or "" for
  # ours and the baselines.
  peer: str = ""

  @property
  def ours(self) -> bool:
    """Whether this is our model server (on either API)."""
    return self.server.split()[0] == "ours"

  @property
  def signature_name(self) -> str:
    """What requests name: the peers serve the one signature as the model."""
    return "" if self.peer else "predict_images"

  @property
  def batching_label(self) -> str:
    return {True: "on", False: "off", None: "-"}[self.batching]


CONFIGS = {
    c.name: c
    for c in (
        ServerConfig("ours_grpc", "ours", "grpc", False),
        ServerConfig("ours_grpc_batching", "ours", "grpc", True),
        ServerConfig("naive_grpc", "naive grpc.aio", "grpc", None),
        ServerConfig("ours_rest", "ours", "rest", False),
        ServerConfig("ours_rest_batching", "ours", "rest", True),
        ServerConfig("fastapi", "FastAPI+uvicorn", "rest", None),
    )
}
# The Open Inference Protocol (v2) rows: ours, and the servers a v2 user would
# otherwise run for a TensorFlow model, each on its own v2 endpoints with its
# dynamic batching on. Loaded with wrk and h2load only.
V2_CONFIGS = {
    c.name: c
    for c in (
        ServerConfig(
            "ours_v2_grpc_batching", "ours v2 raw", "grpc", True, "v2"
        ),
        ServerConfig(
            "ours_v2_rest_batching", "ours v2 JSON", "rest", True, "v2"
        ),
        ServerConfig(
            "ours_v2_binary_rest_batching",
            "ours v2 binary",
            "rest",
            True,
            "v2_binary",
        ),
        ServerConfig(
            "mlserver_grpc", "MLServer 1.7.1 v2", "grpc", True, "v2", "mlserver"
        ),
        ServerConfig(
            "mlserver_rest", "MLServer 1.7.1 v2", "rest", True, "v2", "mlserver"
        ),
        ServerConfig(
            "pytriton_grpc", "PyTriton 0.7 v2", "grpc", True, "v2", "pytriton"
        ),
        ServerConfig(
            "pytriton_rest", "PyTriton 0.7 v2", "rest", True, "v2", "pytriton"
        ),
    )
}
ALL_CONFIGS = {**CONFIGS, **V2_CONFIGS}
# The baseline each of our configurations is judged against.
BASELINE_OF = {"grpc": "naive_grpc", "rest": "fastapi"}
# Rows measured while other processes used more than this much CPU (in % of
# one core), or the hypervisor stole more, are flagged as disturbed.
OTHERS_LIMIT_PCT = 25.0
STEAL_LIMIT_PCT = 15.0


@dataclasses.dataclass
class Row:
  """One load test (or the reason it could not run)."""

  config: ServerConfig
  client: str
  concurrency: int
  # Set on batching rows: the server's num_batch_threads.
  num_batch_threads: int | None = None
  summary: dict[str, Any] | None = None
  failure: str = ""
  # Throughput of every repeat that ran (the summary is the best one's).
  all_rps: list[float] = dataclasses.field(default_factory=list)

  @property
  def key(self) -> tuple[str, str, int, int | None]:
    return (
        self.config.name,
        self.client,
        self.concurrency,
        self.num_batch_threads,
    )

  @property
  def others_pct(self) -> float | None:
    """CPU other processes used meanwhile, in % of one core (>= 0)."""
    s = self.summary or {}
    host = s.get("host_cpu") or {}
    if "busy_pct" not in host:
      return None
    return max(
        0.0,
        host["busy_pct"]
        - (s.get("server_cpu_pct") or 0)
        - (s.get("loadgen_cpu_pct") or 0),
    )

  @property
  def steal_pct(self) -> float | None:
    return ((self.summary or {}).get("host_cpu") or {}).get("steal_pct")

  @property
  def disturbed(self) -> bool:
    """Whether other VMs or processes took a noticeable share of the CPU."""
    return (self.others_pct or 0) > OTHERS_LIMIT_PCT or (
        self.steal_pct or 0
    ) > STEAL_LIMIT_PCT

  def value(self, key: str) -> float | None:
    if self.summary is None:
      return None
    if key in ("p50", "p90", "p99", "max"):
      latency = self.summary.get("latency_ms")
      return latency[key] if latency else None
    return self.summary.get(key)

  def to_json(self) -> dict[str, Any]:
    return {
        "config": dataclasses.asdict(self.config),
        "client": self.client,
        "concurrency": self.concurrency,
        "num_batch_threads": self.num_batch_threads,
        "summary": self.summary,
        "failure": self.failure,
        "all_rps": self.all_rps,
        "disturbed": self.disturbed,
    }


def find(
    rows: Sequence[Row], name: str, client: str, concurrency: int
) -> Row | None:
  for row in rows:
    if (
        row.config.name == name
        and row.client == client
        and row.concurrency == concurrency
    ):
      return row
  return None


def best(attempts: Sequence[Row]) -> Row:
  """The attempt with the highest throughput, remembering all of them."""
  done = [r for r in attempts if r.summary is not None]
  if not done:
    return attempts[0]
  top = max(done, key=lambda r: r.summary["throughput_rps"])
  top.all_rps = [r.summary["throughput_rps"] for r in done]
  return top
