"""The status page's REST routes, `GET /`, `GET /status` and `GET /v1/status`.

Beyond upstream, which answers the first two 404 and the third 400
("Malformed request"); with `--enable_status_page=false` (or any method but
GET) they get exactly those answers again. The REST handler calls `route`
for every request; any other path is longer than these and costs one length
comparison there.

The binary calls `configure` with its flags and `start` once ServerCore has
loaded, so the traffic history covers the minutes before anyone looks.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import functools
import re
import threading
import time
import weakref

from absl import flags as absl_flags
import orjson

from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.model_servers.status_page import document
from tensorflow_serving.model_servers.status_page import history
from tensorflow_serving.model_servers.status_page import page
from tensorflow_serving.model_servers.status_page import server_facts
from tensorflow_serving.util import status

# Group 1: the page; group 2: the JSON document. Case as the /v1 routes.
_PATH_RE = re.compile(r"(/|/status)|(/v1/status)", re.IGNORECASE)
_LONGEST_PATH = len("/v1/status")
JSON_CONTENT_TYPE = "application/json"

# HTTP status, body, content type, and header lines of this answer alone
# (CRLF-terminated).
Answer = tuple[int, bytes, str, bytes]


@dataclasses.dataclass
class _Settings:
  enabled: bool = True
  facts: server_facts.ServerFacts | None = None
  period_s: float = history.DEFAULT_PERIOD_S
  window_s: float = history.DEFAULT_WINDOW_S
  # Tests sample by hand, at times they choose.
  sample_in_background: bool = True
  # --status_page_security_headers: the page's policy as a header too, with
  # what only a header can say (no framing by other sites).
  security_headers: bool = False


_settings = _Settings()
_lock = threading.Lock()
# One status service (and sampler thread) per ServerCore in this process.
_services: weakref.WeakKeyDictionary[
    server_core_lib.ServerCore, StatusService
] = weakref.WeakKeyDictionary()


class StatusService:
  """The history sampler of one ServerCore, and the document built over it."""

  def __init__(
      self,
      core: server_core_lib.ServerCore,
      facts: server_facts.ServerFacts,
      period_s: float,
      window_s: float,
      sample_in_background: bool = True,
  ):
    self.facts = facts
    core_ref = weakref.ref(core)

    def names():
      live = core_ref()
      if live is None:
        return None
      return [m.name for m in live.config.model_config_list.config]

    self.sampler = history.Sampler(names, period_s, window_s)
    if sample_in_background:
      self.sampler.start()

  def document(self, core: server_core_lib.ServerCore) -> dict:
    return document.build(
        core,
        self.sampler.points(),
        self.facts,
        time.time(),
        self.sampler.period_s,
        self.sampler.window_s,
    )

  def stop(self) -> None:
    self.sampler.stop()


def configure(
    flag_values: absl_flags.FlagValues,
    server_options=None,
    workers: int = 1,
) -> None:
  """Takes `--enable_status_page` and the server facts from parsed flags."""
  enabled = bool(getattr(flag_values, "enable_status_page", True))
  with _lock:
    _settings.enabled = enabled
    _settings.security_headers = bool(
        getattr(flag_values, "status_page_security_headers", False)
    )
    _settings.facts = server_facts.from_flags(
        flag_values, server_options, workers=workers
    )


def start(core: server_core_lib.ServerCore) -> None:
  """Starts sampling `core`'s traffic, when the page is enabled and served."""
  facts = _settings.facts
  if not _settings.enabled or (facts is not None and not facts.rest_api_port):
    return
  _service_for(core)


def _service_for(core: server_core_lib.ServerCore) -> StatusService:
  with _lock:
    service = _services.get(core)
    if service is None:
      facts = _settings.facts or server_facts.ServerFacts(time.time())
      service = StatusService(
          core,
          facts,
          _settings.period_s,
          _settings.window_s,
          _settings.sample_in_background,
      )
      _services[core] = service
    return service


def route(
    core: server_core_lib.ServerCore, method: str, path: str
) -> Callable[[], Answer] | None:
  """For a status path, what makes its (HTTP status, body, content type).

  The caller runs it off the event loop: the document takes servable
  handles and a reading of the counters. Returns None for any other path.
  Raises NOT_FOUND, as the transport answers an unknown path, for the page
  paths when disabled or asked with a method other than GET; returns None
  for `/v1/status` then, so the caller gives upstream's 400.
  """
  if len(path) > _LONGEST_PATH:  # Every API path: no regex for them.
    return None
  m = _PATH_RE.fullmatch(path)
  if m is None:
    return None
  serve = _settings.enabled and method == "GET"
  if m.group(2) is not None:
    if not serve:
      return None
    return functools.partial(_document_answer, core)
  if not serve:
    raise status.not_found("Not Found")
  return _page_answer


def _document_answer(core: server_core_lib.ServerCore) -> Answer:
  doc = _service_for(core).document(core)
  return 200, orjson.dumps(doc), JSON_CONTENT_TYPE, b""


def _page_answer() -> Answer:
  try:
    headers = b""
    if _settings.security_headers:
      headers = (
          b"Content-Security-Policy: %s; frame-ancestors 'none'\r\n"
          b"X-Frame-Options: DENY\r\n"
          b"X-Content-Type-Options: nosniff\r\n"
          b"Referrer-Policy: no-referrer\r\n"
      ) % page.content_security_policy().encode("ascii")
    return 200, page.html(), page.CONTENT_TYPE, headers
  except OSError as exc:  # An installation without assets/: say no more.
    raise status.internal(
        "The status page's files are missing from this installation."
    ) from exc


def service_for_test(core: server_core_lib.ServerCore) -> StatusService:
  return _service_for(core)


def reset_for_test(
    enabled: bool = True,
    period_s: float = history.DEFAULT_PERIOD_S,
    window_s: float = history.DEFAULT_WINDOW_S,
    sample_in_background: bool = True,
    security_headers: bool = False,
) -> None:
  """Stops every sampler and restores the defaults."""
  with _lock:
    services = list(_services.values())
    _services.clear()
    _settings.enabled = enabled
    _settings.facts = None
    _settings.period_s = period_s
    _settings.window_s = window_s
    _settings.sample_in_background = sample_in_background
    _settings.security_headers = security_headers
  for service in services:
    service.stop()
