"""The status page's REST routes, `GET /`, `GET /status` and `GET /v1/status`.

Beyond upstream, which answers the first two 404 and the third 400
("Malformed request"); with `--enable_status_page=false` (or any method but
GET) they get exactly those answers again. The REST handler asks its
StatusPage to `route` every request; any other path is longer than these and
costs one length comparison there.

The server builds one StatusPage over its pipeline and starts it once
ServerCore has loaded, so the traffic history covers the minutes before
anyone looks. Versions and their states come from the pipeline's model
view, as GetModelStatus and the REST listing do: under --num_workers the
page shows what every worker serves, not what the worker that took the
connection happens to have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import dataclasses
import re
import time
import weakref

from absl import flags as absl_flags
import orjson

from tensorflow_serving.model_servers import pipeline as pipeline_lib
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


@dataclasses.dataclass(frozen=True)
class StatusPageOptions:
  """What the flags say about the page; the defaults are the server's."""

  enabled: bool = True
  # --status_page_security_headers: the page's policy as a header too, with
  # what only a header can say (no framing by other sites).
  security_headers: bool = False
  # None: facts with no flags, started when the StatusPage is made.
  facts: server_facts.ServerFacts | None = None
  period_s: float = history.DEFAULT_PERIOD_S
  window_s: float = history.DEFAULT_WINDOW_S


def options_from_flags(
    flag_values: absl_flags.FlagValues,
    server_options=None,
    workers: int = 1,
) -> StatusPageOptions:
  """`--enable_status_page`, its headers, and the server facts."""
  return StatusPageOptions(
      enabled=bool(getattr(flag_values, "enable_status_page", True)),
      security_headers=bool(
          getattr(flag_values, "status_page_security_headers", False)
      ),
      facts=server_facts.from_flags(
          flag_values, server_options, workers=workers
      ),
  )


class StatusPage:
  """The page and its document over one pipeline, and the traffic history.

  The history is sampled on a thread of its own once `start` is called (the
  server does, when the page is served); a test samples by hand instead
  (`sampler.sample`).
  """

  def __init__(
      self,
      pipeline: pipeline_lib.Pipeline,
      options: StatusPageOptions = StatusPageOptions(),
  ):
    self._pipeline = pipeline
    self._options = options
    self.facts = options.facts or server_facts.ServerFacts(time.time())
    # The sampler thread must not keep the core alive after the server let
    # it go: it stops at its next reading once the core is gone.
    core_ref = weakref.ref(pipeline.core)

    def names():
      live = core_ref()
      if live is None:
        return None
      return [m.name for m in live.config.model_config_list.config]

    self.sampler = history.Sampler(names, options.period_s, options.window_s)

  @property
  def enabled(self) -> bool:
    return self._options.enabled

  def start(self) -> None:
    """Samples the traffic in the background (the server calls it once the
    REST port serves), unless the page is disabled."""
    if self._options.enabled:
      self.sampler.start()

  def stop(self) -> None:
    self.sampler.stop()

  def route(
      self, method: str, path: str
  ) -> Callable[[], Awaitable[Answer]] | None:
    """For a status path, what answers it: (HTTP status, body, type, headers).

    Returns None for any other path. Raises NOT_FOUND, as the transport
    answers an unknown path, for the page paths when disabled or asked
    with a method other than GET; returns None for `/v1/status` then, so
    the caller gives upstream's 400.
    """
    if len(path) > _LONGEST_PATH:  # Every API path: no regex for them.
      return None
    m = _PATH_RE.fullmatch(path)
    if m is None:
      return None
    serve = self._options.enabled and method == "GET"
    if m.group(2) is not None:
      if not serve:
        return None
      return self._document_answer
    if not serve:
      raise status.not_found("Not Found")
    return self._page_answer

  async def document(self) -> dict:
    """The document: states from the model view, the rest read off the loop.

    Reading signatures takes servable handles, and reading the counters
    takes their locks: neither belongs on the event loop.
    """
    statuses = dict(await self._pipeline.models.statuses())
    return await self._pipeline.runner.call(
        document.build,
        self._pipeline.core,
        statuses,
        self.sampler.points(),
        self.facts,
        time.time(),
        self.sampler.period_s,
        self.sampler.window_s,
    )

  async def _document_answer(self) -> Answer:
    doc = await self.document()
    return 200, orjson.dumps(doc), JSON_CONTENT_TYPE, b""

  async def _page_answer(self) -> Answer:
    # Off the loop: the first answer reads the page's files.
    return await self._pipeline.runner.call(self._page)

  def _page(self) -> Answer:
    try:
      headers = b""
      if self._options.security_headers:
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
