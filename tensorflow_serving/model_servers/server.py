"""The model server: one ServerCore behind gRPC and REST on one event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import socket
import ssl
from typing import Protocol

from absl import logging
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from tensorflow_serving.model_servers import admission
from tensorflow_serving.model_servers import control_plane
from tensorflow_serving.model_servers import grpc_services
from tensorflow_serving.model_servers import http_rest_api_handler
from tensorflow_serving.model_servers import model_config
from tensorflow_serving.model_servers import model_runner
from tensorflow_serving.model_servers import model_view
from tensorflow_serving.model_servers import pipeline as pipeline_lib
from tensorflow_serving.model_servers import profiler_service
from tensorflow_serving.model_servers import reflection
from tensorflow_serving.model_servers import rest_server
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.model_servers import shutdown
from tensorflow_serving.model_servers import tracing
from tensorflow_serving.model_servers.status_page import routes as status_page
from tensorflow_serving.model_servers.v2 import grpc_service as v2_grpc_service
from tensorflow_serving.model_servers.v2 import repository as v2_repository
from tensorflow_serving.util import status
from tensorflow_serving.util.net.grpc_h2 import limits as grpc_limits
from tensorflow_serving.util.net.grpc_h2 import server as grpc_h2_server

_CPUS = os.cpu_count() or 1
# How long /v1/health/ready waits for a request thread before it reports
# that this process's data path cannot serve.
READY_PROBE_TIMEOUT_S = 1.0


@dataclasses.dataclass
class ServerOptions:
  """Transport settings; what to serve is in ServerCoreOptions."""

  grpc_port: int = 8500
  grpc_socket_path: str = ""
  rest_api_port: int = 0
  # Worker threads for requests that leave the event loop (unbatched model
  # runs, Classify/Regress, metadata), gRPC and REST alike; config reloads
  # and model status never use them (control_plane.py).
  grpc_max_threads: int = 4 * _CPUS
  enable_serialization_as_tensor_content: bool = False
  # From --grpc_channel_arguments; see grpc_limits.CHANNEL_ARGUMENTS for those used.
  grpc_channel_arguments: tuple[tuple[str, str | int], ...] = ()
  enable_grpc_healthcheck_service: bool = False
  # TensorFlow's profiler service on the gRPC port (upstream's default: on).
  enable_profiler: bool = True
  profiler_max_duration_ms: int = profiler_service.DEFAULT_MAX_DURATION_MS
  # PEM contents for TLS on gRPC (--ssl_config_file); None = insecure.
  ssl_server_key: str | None = None
  ssl_server_cert: str | None = None
  ssl_custom_ca: str | None = None
  ssl_client_verify: bool = False
  http: rest_server.HttpOptions = dataclasses.field(
      default_factory=rest_server.HttpOptions
  )
  # The HTTP/2 state machine under gRPC: ours, or python-hyper h2's.
  grpc_http2_engine: str = "native"
  # Re-read this ModelServerConfig file every period and apply it (0: never).
  model_config_file: str = ""
  model_config_file_poll_wait_seconds: int = 0
  # The longest a config reload waits for its models when the caller set no
  # deadline (None: no bound, as upstream).
  model_config_reload_timeout_s: float | None = (
      control_plane.DEFAULT_RELOAD_TIMEOUT_S
  )
  # Seconds given to in-flight requests when the server is asked to stop.
  shutdown_grace_s: float = shutdown.DEFAULT_GRACE_S
  # Model runs one process holds at once, queued or running; past it, and
  # for runs that cannot meet their deadline, UNAVAILABLE (admission.py).
  max_pending_requests: int = admission.DEFAULT_MAX_PENDING
  # False: only max_pending_requests refuses; late runs queue (upstream).
  shed_by_deadline: bool = True
  # Beyond upstream: the token HandleReloadConfigRequest and the v2
  # repository's load/unload must present (--model_service_token_file or
  # TF_SERVING_MODEL_SERVICE_TOKEN); None leaves them open, as upstream.
  model_service_token: str | None = None
  # Set in each process of --num_workers > 1 (model_servers/workers).
  worker: WorkerHooks | None = None
  # The v2 model repository API may load and unload models.
  enable_model_control_api: bool = False
  # OpenTelemetry traces over OTLP/HTTP to this URL ("" = off), sampling
  # this fraction of new traces (tracing.py).
  otlp_traces_endpoint: str = ""
  trace_sampling_ratio: float = 1.0
  # Beyond upstream: the status page on the REST port (status_page/).
  status_page: status_page.StatusPageOptions = dataclasses.field(
      default_factory=status_page.StatusPageOptions
  )


class WorkerHooks(Protocol):
  """How a worker process of model_servers/workers serves differently.

  A worker binds no port itself: it accepts on sockets its supervisor bound
  (Server.listen), and reloads and model status cover every worker.
  """

  def management(
      self, core: server_core_lib.ServerCore
  ) -> control_plane.ModelManagement:
    """Called once the models loaded, before anything listens."""
    ...

  async def serving(self, server: Server) -> None:
    """Called on the event loop once both APIs are up (listening on none)."""
    ...


# grpc.health.v1 services reported SERVING (besides "", the whole server):
# the fully qualified names, and the short ones earlier releases answered.
HEALTH_SERVICE_NAMES = (
    "tensorflow.serving.ModelService",
    "tensorflow.serving.PredictionService",
    "ModelService",
    "PredictionService",
)


def grpc_server_limits(
    channel_arguments: tuple[tuple[str, str | int], ...],
) -> grpc_limits.GrpcLimits:
  """The gRPC transport's limits that --grpc_channel_arguments asks for.

  Upstream passes these to gRPC's C++ builder; the ones that have a meaning
  for this server's transport are applied (grpc_limits.CHANNEL_ARGUMENTS),
  the others are logged and ignored.
  """
  applied = {}
  for key, value in channel_arguments:
    if key not in grpc_limits.CHANNEL_ARGUMENTS or not isinstance(value, int):
      logging.warning(
          "gRPC channel argument %s=%s has no effect here.", key, value
      )
      continue
    applied[key] = value
  return grpc_limits.from_channel_arguments(applied)


class StartError(Exception):
  """The server could not start listening; carries upstream's status."""

  def __init__(self, error: status.ServingError):
    super().__init__(error.message)
    self.error = error


class Server:
  """Starts both APIs over an already created ServerCore; stops them cleanly."""

  def __init__(self, core: server_core_lib.ServerCore, options: ServerOptions):
    self.core = core
    self._options = options
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, options.grpc_max_threads),
        thread_name_prefix="request",
    )
    self._runner = model_runner.ModelRunner(
        self._executor,
        admission.Admission(
            options.max_pending_requests,
            # Runs that start at once on a free thread never queue.
            min_pending_to_shed=options.grpc_max_threads,
            shed_by_deadline=options.shed_by_deadline,
        ),
    )
    worker = options.worker
    # Under --num_workers, reloads and model status span every worker.
    management = worker.management(core) if worker else None
    self.control = control_plane.ControlPlane(
        core, management, options.model_config_reload_timeout_s
    )
    self.control.ready_check = self.ready_problem
    self.pipeline = pipeline_lib.Pipeline(
        core,
        self._runner,
        self.control,
        model_view.ModelView(core, management),
    )
    self.status_page = status_page.StatusPage(
        self.pipeline, options.status_page
    )
    self._repository = v2_repository.ModelRepository(
        core, options.enable_model_control_api, self.control
    )
    if options.otlp_traces_endpoint:
      self.pipeline.tracing = tracing.Tracing(
          options.otlp_traces_endpoint, options.trace_sampling_ratio
      )
    self._grpc: grpc_h2_server.Server | None = None
    self._http: rest_server.http1_server.HttpServer | None = None
    self._stop = asyncio.Event()
    self._health: grpc_health.aio.HealthServicer | None = None
    self._profiler: profiler_service.ProfilerServicer | None = None
    self._config_poller: asyncio.Task | None = None

  async def start(self) -> None:
    opts = self._options
    if opts.grpc_port or opts.grpc_socket_path:
      self._grpc = grpc_h2_server.Server(
          executor=self._executor,
          limits=grpc_server_limits(opts.grpc_channel_arguments),
          engine=opts.grpc_http2_engine,
      )
      grpc_services.add_services(
          self._grpc,
          self.pipeline,
          opts.enable_serialization_as_tensor_content,
          opts.model_service_token,
      )
      services = list(grpc_services.SERVICE_NAMES)
      if self._add_v2_grpc_service():
        services.append(v2_grpc_service.SERVICE_NAME)
      if opts.enable_grpc_healthcheck_service:
        self._health = grpc_health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        # "" (the whole server) is SERVING from the servicer's start; probes
        # such as Kubernetes' ask for the fully qualified service names.
        for service in HEALTH_SERVICE_NAMES:
          await self._health.set(
              service, health_pb2.HealthCheckResponse.SERVING
          )
        services.append(grpc_health.SERVICE_NAME)
      if opts.enable_profiler:
        self._profiler = profiler_service.add_to_server(
            self._grpc, opts.profiler_max_duration_ms
        )
        if self._profiler is not None:
          services.append(profiler_service.SERVICE_NAME)
      reflection.add_to_server(self._grpc, services)
      if opts.grpc_port and opts.worker is None:
        await self._add_port(f"0.0.0.0:{opts.grpc_port}")
      if opts.grpc_socket_path and opts.worker is None:
        await self._add_port(f"unix:{opts.grpc_socket_path}")
      await self._grpc.start()
      if opts.grpc_port:
        logging.info(
            "Running gRPC ModelServer at 0.0.0.0:%d ...", opts.grpc_port
        )
      if opts.grpc_socket_path:
        logging.info(
            "Running gRPC ModelServer at UNIX socket %s ...",
            opts.grpc_socket_path,
        )
    if opts.rest_api_port:
      if opts.rest_api_port == opts.grpc_port:
        logging.error(
            "--rest_api_port cannot be the same as --port. "
            "Please use a different port for HTTP/REST API. "
            "Skipped setting up HTTP/REST API server."
        )
      else:
        handler = http_rest_api_handler.HttpRestApiHandler(
            self.pipeline,
            self._repository,
            opts.model_service_token,
            self.status_page,
        )
        self._http = rest_server.make_server(
            rest_server.make_app(handler, opts.http),
            # A worker accepts on its supervisor's sockets (listen()).
            opts.rest_api_port if opts.worker is None else None,
            opts.http,
        )
        await self._http.start()
        self.status_page.start()
        logging.info(
            "Exporting HTTP/REST API at:localhost:%d ...", opts.rest_api_port
        )
        if opts.http.ssl_context is not None:
          logging.info("The HTTP/REST API is served over TLS (HTTPS).")

    if opts.model_config_file and opts.model_config_file_poll_wait_seconds > 0:
      self._config_poller = asyncio.create_task(self._poll_model_config())
    if opts.worker is not None:
      await opts.worker.serving(self)

  def _add_v2_grpc_service(self) -> bool:
    """inference.GRPCInferenceService, when its generated stubs are installed.

    They come from tritonclient, which the pip package cannot declare (its
    bounds exclude the pinned protobuf; see requirements-nodeps.txt): a
    server installed without it serves every other API and says so.
    Returns whether the service is registered.
    """
    try:
      v2_grpc_service.add_service(
          self._grpc,
          v2_grpc_service.GRPCInferenceService(
              self.pipeline,
              self._repository,
              self._options.model_service_token,
          ),
      )
    except ImportError as exc:
      logging.warning(
          "Not serving inference.GRPCInferenceService (the v2 protocol's "
          "gRPC API): %s. Install tritonclient==2.73.0 with --no-deps.",
          exc,
      )
      return False
    return True

  async def listen(self, api: str, sock: socket.socket) -> None:
    """Also accepts `api` ("grpc" or "rest") requests on a bound socket."""
    if api == "grpc" and self._grpc is not None:
      await self._grpc.add_listening_socket(sock, self._ssl_context())
    elif api == "rest" and self._http is not None:
      await self._http.add_listening_socket(sock)
    else:
      sock.close()

  def unlisten(self, api: str, sock: socket.socket) -> None:
    """Stops accepting on a socket given to listen()."""
    if api == "grpc" and self._grpc is not None:
      self._grpc.remove_listening_socket(sock)
    elif api == "rest" and self._http is not None:
      self._http.remove_listening_socket(sock)

  def _ssl_context(self) -> ssl.SSLContext | None:
    opts = self._options
    if opts.ssl_server_cert is None:
      return None
    return grpc_h2_server.ssl_server_context(
        opts.ssl_server_cert,
        opts.ssl_server_key,
        opts.ssl_custom_ca,
        opts.ssl_client_verify,
    )

  async def _add_port(self, address: str) -> None:
    context = self._ssl_context()
    if context is None:
      await self._grpc.add_insecure_port(address)
      return
    await self._grpc.add_secure_port(address, context)

  async def _poll_model_config(self) -> None:
    """Re-reads --model_config_file; failures are logged, serving goes on.

    Each poll waits for the models it added at most one poll period, so a
    model whose base path has no version yet never holds up the next edit
    of the file (upstream's poller waits for it); it is reported once, and
    loads when a version appears.
    """
    opts = self._options
    period = opts.model_config_file_poll_wait_seconds
    loop = asyncio.get_running_loop()
    reported = ""
    while True:
      await asyncio.sleep(period)
      try:
        config = await loop.run_in_executor(
            None, model_config.parse_model_server_config, opts.model_config_file
        )
      except (OSError, model_config.ConfigError) as exc:
        logging.error("Failed to read ModelServerConfig file: %s", exc)
        continue
      try:
        # The per-model control API's loads and unloads outlive a poll.
        await self.control.apply_and_wait(
            config, period, keep_model_overrides=True
        )
        reported = ""
      except status.ServingError as exc:
        if exc.code != status.Code.DEADLINE_EXCEEDED:
          logging.error(
              "PollFilesystemAndReloadConfig failed to ReloadConfig: %s",
              exc.message,
          )
        elif exc.message != reported:
          reported = exc.message
          logging.warning(
              "Polling %s goes on meanwhile: %s",
              opts.model_config_file,
              exc.message,
          )

  async def ready_problem(self) -> str | None:
    """Why this process cannot serve now (None: it can); for readiness.

    Not ready while stopping, and while no request thread is free to run
    work within READY_PROBE_TIMEOUT_S (its data path is wedged).
    """
    if self._stop.is_set():
      return "The model server is stopping."
    try:
      await asyncio.wait_for(self._runner.call(_no_op), READY_PROBE_TIMEOUT_S)
    except TimeoutError:
      return (
          "No request thread became free within "
          f"{READY_PROBE_TIMEOUT_S:g} s."
      )
    return None

  def request_stop(self) -> None:
    self._stop.set()

  async def wait_for_termination(self) -> None:
    await self._stop.wait()
    grace = self._options.shutdown_grace_s
    logging.info(
        "Stopping the model server: finishing in-flight requests (up to "
        "%.0f s)",
        grace,
    )
    if self._config_poller is not None:
      self._config_poller.cancel()
    self.control.stop()
    if self._health is not None:
      await self._health.enter_graceful_shutdown()
    # Both APIs drain together, so the whole stop fits one grace period.
    stops = []
    if self._grpc is not None:
      stops.append(self._grpc.stop(grace))
    if self._http is not None:
      stops.append(self._http.stop(grace))
    await asyncio.gather(*stops)
    if self._profiler is not None:
      self._profiler.close()
    self.status_page.stop()
    # Work no call waits for any more is dropped, not run; a thread still in
    # a model is not waited for (the process exits around it).
    self._executor.shutdown(wait=False, cancel_futures=True)
    self.core.stop()
    if self.pipeline.tracing is not None:
      self.pipeline.tracing.shutdown()
    logging.info("Model server stopped.")

  async def run_until_signalled(self) -> None:
    """Serves until SIGINT or SIGTERM; raises StartError if it cannot listen.

    A port that cannot be bound stops whatever had started and reports
    upstream's start-up failure instead of a traceback.
    """
    loop = asyncio.get_running_loop()
    for sig in shutdown.SIGNALS:
      loop.add_signal_handler(sig, shutdown.handle, sig)
    unregister = shutdown.on_stop(self.request_stop)
    try:
      try:
        await self.start()
      except OSError as exc:
        self.request_stop()
        await self.wait_for_termination()
        raise StartError(
            status.invalid_argument(f"Failed to BuildAndStart server: {exc}")
        ) from exc
      await self.wait_for_termination()
    finally:
      unregister()


def _no_op() -> None:
  pass
