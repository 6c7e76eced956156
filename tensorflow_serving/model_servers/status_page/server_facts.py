"""What the status page says about the server itself, safe to show anyone.

Everything here is fixed at start-up except the uptime. The page is served
without authentication on the REST port, so flags are shown with care: a
string flag's value appears only when it is known to hold no filesystem path
and no secret; every other one that was set reads "(set)". The SSL config is
reduced to whether TLS and client verification are on.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import sys
import time
from typing import Any

from absl import flags as absl_flags

from tensorflow_serving.model_servers import version

# String flags whose values are neither paths nor secrets. A base path is
# what the model config shows anyway.
SHOWN_STRING_FLAGS = frozenset(
    {
        "model_name",
        "model_base_path",
        "saved_model_tags",
        "grpc_channel_arguments",
        "mixed_precision",
    }
)
REDACTED = "(set)"
# Defined in main.py; its module's flags are the server's own.
_ANCHOR_FLAG = "enable_status_page"


@dataclasses.dataclass(frozen=True)
class ServerFacts:
  """Start-up facts; `workers` is how many processes share the ports."""

  started_at_s: float
  flags: dict[str, Any] = dataclasses.field(default_factory=dict)
  grpc_tls: bool = False
  grpc_client_verify: bool = False
  rest_api_port: int = 0
  prometheus_path: str | None = None
  workers: int = 1

  def to_json(self, now_s: float) -> dict[str, Any]:
    return {
        "version": f"{version.SERVER_VERSION}-py",
        "tensorflow_version": tensorflow_version(),
        "build": {
            "device": version.BUILD_DEVICE,
            "compilation_mode": version.COMPILATION_MODE,
        },
        "started_at": round(self.started_at_s, 3),
        "uptime_s": round(max(0.0, now_s - self.started_at_s), 3),
        "workers": self.workers,
        "grpc_tls": {
            "enabled": self.grpc_tls,
            "client_verify": self.grpc_client_verify,
        },
        "rest_api_port": self.rest_api_port,
        "prometheus_path": self.prometheus_path,
        "flags": dict(self.flags),
    }


def tensorflow_version() -> str | None:
  """TensorFlow's version without importing it (the server already has)."""
  tf = sys.modules.get("tensorflow")
  found = getattr(tf, "__version__", None)
  if found:
    return found
  try:
    return importlib.metadata.version("tensorflow")
  except importlib.metadata.PackageNotFoundError:
    return None


def changed_flags(flag_values: absl_flags.FlagValues) -> dict[str, Any]:
  """The server's flags whose value differs from the default, made safe."""
  try:
    module = flag_values.find_module_defining_flag(_ANCHOR_FLAG)
  except KeyError:
    return {}
  if module is None:
    return {}
  out = {}
  for flag in sorted(
      flag_values.get_flags_for_module(module), key=lambda f: f.name
  ):
    if flag.value == flag.default:
      continue
    out[flag.name] = _shown_value(flag)
  return out


def _shown_value(flag: absl_flags.Flag) -> Any:
  value = flag.value
  if isinstance(value, bool | int | float) or value is None:
    return value
  if isinstance(flag, absl_flags.EnumFlag) or flag.name in SHOWN_STRING_FLAGS:
    return str(value)
  return REDACTED if value else ""


def from_flags(
    flag_values: absl_flags.FlagValues,
    server_options: Any = None,
    workers: int = 1,
    started_at_s: float | None = None,
) -> ServerFacts:
  """Facts from the parsed flags and the transport options made of them.

  `server_options` (server.ServerOptions) is read for what the flags turned
  into, never for the SSL material itself.
  """
  http = getattr(server_options, "http", None)
  return ServerFacts(
      started_at_s=time.time() if started_at_s is None else started_at_s,
      flags=changed_flags(flag_values),
      grpc_tls=getattr(server_options, "ssl_server_cert", None) is not None,
      grpc_client_verify=bool(
          getattr(server_options, "ssl_client_verify", False)
      ),
      rest_api_port=int(getattr(server_options, "rest_api_port", 0) or 0),
      prometheus_path=getattr(http, "prometheus_path", None),
      workers=workers,
  )
