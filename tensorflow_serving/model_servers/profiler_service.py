"""TensorFlow's profiler service on the gRPC port, as upstream's server has it.

Upstream registers TensorFlow's `tensorflow.ProfilerService` beside its own
services (--enable_profiler, on by default), so TensorBoard's "Capture
profile" and `tf.profiler.experimental.client.trace("grpc://host:8500", ...)`
trace a live server. Here TensorFlow's own ProfilerSession collects the
trace, and the result is written where TensorFlow's service writes it:
`<repository_root>/<session_id>/<host_name>.xplane.pb`, a path the client
chose and must share with the server.

The service's messages come from TensorFlow itself: the pip package has no
Python module for them, so profiler_protos reads the descriptor that
TensorFlow's profiler library was compiled with.

Bounds beyond upstream: one trace at a time (a second gets UNAVAILABLE, so
clients retry), a trace no longer than `max_duration_ms` (INVALID_ARGUMENT
past it, naming the flag), and the wait is a timer on the event loop, so a
trace in progress holds no request thread. Collecting and writing the trace
run on a thread of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import os
import shutil
import socket
import tempfile

from absl import logging
import grpc

from tensorflow_serving.model_servers import profiler_protos

SERVICE_NAME = "tensorflow.ProfilerService"
# The longest trace a request may ask for unless --profiler_max_duration_ms
# says otherwise: TensorBoard asks for 1 s by default.
DEFAULT_MAX_DURATION_MS = 300_000


class ProfilerServicer:
  """Profile and Terminate of tensorflow.ProfilerService."""

  def __init__(self, protos, max_duration_ms: int = DEFAULT_MAX_DURATION_MS):
    self._protos = protos
    self._max_duration_ms = max_duration_ms
    self._busy = False
    self._session_id = ""
    self._stop: asyncio.Event | None = None
    # Starting, collecting and writing a trace block; never on the loop or
    # the request threads.
    self._thread = concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="profiler"
    )

  async def Profile(self, request, context):
    duration_ms = request.opts.duration_ms or request.duration_ms
    if duration_ms > self._max_duration_ms:
      await context.abort(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"duration_ms {duration_ms} is longer than this server allows "
          f"({self._max_duration_ms} ms; --profiler_max_duration_ms)",
      )
    if self._busy:
      await context.abort(
          grpc.StatusCode.UNAVAILABLE,
          "Another profiling session is active; retry when it ends.",
      )
    self._busy = True
    self._session_id = request.session_id
    self._stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    session = None
    try:
      session = await loop.run_in_executor(
          self._thread, _start_session, request.opts
      )
      try:
        await asyncio.wait_for(self._stop.wait(), duration_ms / 1000.0)
      except TimeoutError:
        pass
      session, started = None, session
      path, has_events = await loop.run_in_executor(
          self._thread, _collect, started, request
      )
      if path:
        logging.info("Profiler trace of %d ms written to %s", duration_ms, path)
      return self._protos.ProfileResponse(empty_trace=not has_events)
    except Exception as exc:
      await context.abort(grpc.StatusCode.INTERNAL, str(exc))
    finally:
      if session is not None:  # cancelled or failed mid-trace
        self._thread.submit(_discard, session)
      self._busy = False
      self._stop = None

  async def Terminate(self, request, context):
    del context
    if self._stop is not None and request.session_id == self._session_id:
      self._stop.set()
    return self._protos.TerminateResponse()

  def close(self) -> None:
    self._thread.shutdown(wait=False, cancel_futures=True)


class _Session:
  """A TensorFlow ProfilerSession exporting into a private directory."""

  def __init__(self, opts):
    # pylint: disable=g-import-not-at-top
    from tensorflow.python.profiler.internal import _pywrap_profiler

    self.directory = tempfile.mkdtemp(prefix="tf_serving_profile_")
    self.session = _pywrap_profiler.ProfilerSession()
    options = {
        "host_tracer_level": int(opts.host_tracer_level or 2),
        "python_tracer_level": int(opts.python_tracer_level),
        "device_tracer_level": int(opts.device_tracer_level or 1),
    }
    try:
      self.session.start(self.directory, options)
    except Exception:
      shutil.rmtree(self.directory, ignore_errors=True)
      raise

  def export(self) -> str | None:
    """Stops the trace; the XSpace file TensorFlow wrote, if any."""
    self.session.export_to_tb()
    found = glob.glob(
        os.path.join(self.directory, "**", "*.xplane.pb"), recursive=True
    )
    return found[0] if found else None

  def discard(self) -> None:
    shutil.rmtree(self.directory, ignore_errors=True)


def _start_session(opts) -> _Session:
  return _Session(opts)


def _discard(session: _Session) -> None:
  try:
    session.export()
  except Exception:
    pass
  session.discard()


def _has_events(path: str) -> bool:
  # pylint: disable=g-import-not-at-top
  from tensorflow.tsl.profiler.protobuf import xplane_pb2

  with open(path, "rb") as f:
    space = xplane_pb2.XSpace.FromString(f.read())
  return any(line.events for plane in space.planes for line in plane.lines)


def _collect(session: _Session, request) -> tuple[str, bool]:
  """Ends the trace and moves TensorFlow's file to where the client looks:
  <repository_root>/<session_id>/<host_name>.xplane.pb."""
  try:
    exported = session.export()
    if exported is None:
      return "", False
    has_events = _has_events(exported)
    if not request.repository_root:
      return "", has_events
    directory = os.path.join(request.repository_root, request.session_id)
    os.makedirs(directory, exist_ok=True)
    host = request.host_name or socket.gethostname()
    path = os.path.join(directory, f"{host}.xplane.pb")
    shutil.move(exported, path)
    return path, has_events
  finally:
    session.discard()


def add_to_server(server, max_duration_ms: int) -> ProfilerServicer | None:
  """Registers the service; None (logged) where TensorFlow's descriptor
  cannot be read, so the server still starts."""
  try:
    protos = profiler_protos.load()
  except profiler_protos.NotFoundError as exc:
    logging.warning("The profiler service is not available: %s", exc)
    return None
  servicer = ProfilerServicer(protos, max_duration_ms)
  handlers = {
      "Profile": grpc.unary_unary_rpc_method_handler(
          servicer.Profile,
          request_deserializer=protos.ProfileRequest.FromString,
          response_serializer=protos.ProfileResponse.SerializeToString,
      ),
      "Terminate": grpc.unary_unary_rpc_method_handler(
          servicer.Terminate,
          request_deserializer=protos.TerminateRequest.FromString,
          response_serializer=protos.TerminateResponse.SerializeToString,
      ),
  }
  server.add_generic_rpc_handlers(
      (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
  )
  return servicer
