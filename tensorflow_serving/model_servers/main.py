"""tensorflow_model_server: upstream's flags, served by the Python server.

    tensorflow_model_server --port=8500 --rest_api_port=8501 \
        --model_name=mnist --model_base_path=/tmp/mnist_model
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

from tensorflow_serving.model_servers import shutdown

_CPUS = os.cpu_count() or 1

# Ports and transport.
flags.DEFINE_integer("port", 8500, "TCP port for gRPC; 0 disables it.")
flags.DEFINE_string(
    "grpc_socket_path",
    "",
    "If set, also listen for gRPC on this UNIX socket path.",
)
flags.DEFINE_integer(
    "rest_api_port",
    0,
    "Port for the HTTP/REST API; 0 disables it. Must differ " "from --port.",
)
flags.DEFINE_integer(
    "rest_api_num_threads",
    4 * _CPUS,
    "Accepted for compatibility; REST shares the request "
    "worker pool (--grpc_max_threads).",
)
flags.DEFINE_integer(
    "rest_api_timeout_in_ms", 30000, "Timeout for HTTP/REST API calls."
)
flags.DEFINE_integer(
    "grpc_max_threads",
    4 * _CPUS,
    "Worker threads for requests that leave the event loop "
    "(unbatched runs, Classify/Regress, metadata).",
)
flags.DEFINE_bool(
    "enable_serialization_as_tensor_content",
    False,
    "Send Predict output tensors as packed tensor_content.",
)
flags.DEFINE_bool(
    "rest_api_enable_cors_support",
    False,
    "Answer CORS preflights and add Access-Control-Allow-* "
    "headers to REST responses.",
)
flags.DEFINE_string(
    "grpc_channel_arguments",
    "",
    "Comma-separated key=value gRPC server arguments. Applied: "
    "grpc.max_receive_message_length, grpc.max_concurrent_streams, "
    "grpc.max_metadata_size, grpc.absolute_max_metadata_size, "
    "grpc.server_handshake_timeout_ms, grpc.keepalive_time_ms, "
    "grpc.keepalive_timeout_ms, grpc.max_connection_idle_ms, "
    "grpc.max_connection_age_ms, grpc.max_connection_age_grace_ms and "
    "this server's grpc.tf_serving.* budgets (docs/hardening.md); "
    "others are logged and ignored.",
)
flags.DEFINE_enum(
    "grpc_http2_engine",
    "native",
    ["native", "h2"],
    "Beyond upstream: the HTTP/2 state machine under gRPC, this "
    "server's own or python-hyper h2 (for A/B measurements).",
)
# REST limits and timeouts (beyond upstream; nginx's equivalents in
# parentheses). Past a size limit: 414, 431 or 413; past a timeout: 408.
flags.DEFINE_integer(
    "rest_api_max_url_bytes", 16 << 10, "Request URL size (414 past it)."
)
flags.DEFINE_integer(
    "rest_api_max_header_bytes",
    64 << 10,
    "Request header section size (431 past it; large_client_header_buffers).",
)
flags.DEFINE_integer(
    "rest_api_max_body_bytes",
    (1 << 31) - 1,
    "Request body size, received and once decompressed (413 past it; "
    "client_max_body_size).",
)
flags.DEFINE_integer(
    "rest_api_max_buffer_bytes",
    4 << 30,
    "Request body bytes all REST connections may hold together; past it "
    "they stop reading until some are answered.",
)
flags.DEFINE_integer(
    "rest_api_header_timeout_ms",
    60000,
    "Time for a request line and headers to arrive (client_header_timeout).",
)
flags.DEFINE_integer(
    "rest_api_body_timeout_ms",
    60000,
    "Longest wait between two reads of a body (client_body_timeout).",
)
flags.DEFINE_integer(
    "rest_api_keepalive_timeout_ms",
    75000,
    "An idle keep-alive connection is closed after this (keepalive_timeout).",
)
flags.DEFINE_bool(
    "enable_grpc_healthcheck_service",
    False,
    "Serve grpc.health.v1.Health with ModelService and "
    "PredictionService SERVING.",
)
flags.DEFINE_string(
    "ssl_config_file",
    "",
    "Text-format SSLConfig: serve gRPC over TLS (mTLS with " "client_verify).",
)
flags.DEFINE_bool("use_alts_credentials", False, "Not supported.")
# Beyond upstream, all off by default (docs/hardening.md).
flags.DEFINE_string(
    "rest_api_ssl_config_file",
    "",
    "Beyond upstream: text-format SSLConfig (as --ssl_config_file) to serve "
    "the REST API over TLS; empty serves plain HTTP.",
)
flags.DEFINE_string(
    "model_service_token_file",
    "",
    "Beyond upstream: a file holding a token that state-changing calls "
    "(HandleReloadConfigRequest, the v2 repository's load and unload) must "
    "present as `authorization: Bearer TOKEN`. The environment variable "
    "TF_SERVING_MODEL_SERVICE_TOKEN does the same when this is empty.",
)
flags.DEFINE_bool(
    "status_page_security_headers",
    False,
    "Beyond upstream: send Content-Security-Policy and X-Frame-Options "
    "with the status page, so other sites cannot frame or inject into it.",
)
flags.DEFINE_integer(
    "max_pending_requests",
    10000,
    "Beyond upstream: model runs (queued or running) one serving process "
    "holds at once; past it requests are refused with UNAVAILABLE / 503 "
    "and a retry hint. Requests that cannot finish before their deadline "
    "are refused the same way (docs/hardening.md).",
)
flags.DEFINE_bool(
    "shed_by_deadline",
    True,
    "Beyond upstream: refuse (UNAVAILABLE / 503 with a retry hint) a model "
    "run that cannot finish before its deadline once runs queue. false: "
    "queue it until its deadline passes, as upstream does (still bounded "
    "by --max_pending_requests).",
)
flags.DEFINE_string(
    "monitoring_config_file",
    "",
    "Text-format MonitoringConfig; enables Prometheus on the " "REST port.",
)
# What to serve.
flags.DEFINE_string("model_name", "default", "Name of the model.")
flags.DEFINE_string(
    "model_base_path",
    "",
    "Path to export: the directory holding version " "subdirectories.",
)
flags.DEFINE_string(
    "model_config_file",
    "",
    "Text-format ModelServerConfig; when set, --model_name "
    "and --model_base_path are ignored.",
)
flags.DEFINE_integer(
    "model_config_file_poll_wait_seconds",
    0,
    "Re-read --model_config_file at this period (0: once).",
)
flags.DEFINE_float(
    "model_config_reload_timeout_seconds",
    600.0,
    "Beyond upstream (which waits without limit): the longest a config "
    "reload (HandleReloadConfigRequest, a --model_config_file poll) or a "
    "v2 repository load or unload waits for its models when the caller set "
    "no shorter deadline; past it the change stays applied and the call "
    "answers DEADLINE_EXCEEDED. "
    "0: no limit.",
    lower_bound=0.0,
)
flags.DEFINE_bool(
    "allow_version_labels_for_unavailable_models",
    False,
    "Allow assigning a new label to a version that is not yet " "AVAILABLE.",
)
flags.DEFINE_string(
    "platform_config_file", "", "Accepted for compatibility; has no effect."
)
flags.DEFINE_string(
    "saved_model_tags",
    "serve",
    "Comma-separated tags of the MetaGraphDef to load.",
)
# Lifecycle.
flags.DEFINE_integer(
    "file_system_poll_wait_seconds",
    1,
    "Seconds between polls of the base paths for new "
    "versions; 0 polls once, a negative value never polls.",
)
# Remote model stores (s3://): see docs/storage.md.
flags.DEFINE_string(
    "model_cache_dir",
    "",
    "Directory under which s3:// model versions are copied before loading "
    "(each process uses its own subdirectory); empty: the system temp dir.",
)
flags.DEFINE_integer(
    "model_cache_size_bytes",
    0,
    "Most bytes the s3:// version cache may hold; a version that would "
    "exceed it is not loaded. 0: no limit.",
)
flags.DEFINE_float(
    "model_download_timeout_seconds",
    600.0,
    "Wall-clock limit of one attempt at downloading one s3:// version.",
)
flags.DEFINE_integer(
    "model_download_retries",
    3,
    "Further attempts after a transient download failure, with back-off "
    "doubling from 1s.",
)
flags.DEFINE_float(
    "storage_request_timeout_seconds",
    30.0,
    "Connect and read timeout of each s3:// request (listings included).",
)
flags.DEFINE_integer("max_num_load_retries", 5, "Retries after a failed load.")
flags.DEFINE_integer(
    "load_retry_interval_micros",
    60 * 1000 * 1000,
    "Microseconds between load retries.",
)
flags.DEFINE_integer(
    "num_load_threads",
    0,
    "Threads for loading versions after start-up; 0 loads "
    "inside the manager thread.",
)
flags.DEFINE_integer("num_unload_threads", 0, "Threads for unloading.")
flags.DEFINE_bool(
    "enable_model_warmup",
    True,
    "Replay assets.extra/tf_serving_warmup_requests on load.",
)
flags.DEFINE_integer(
    "num_request_iterations_for_warmup",
    0,
    "Times each warmup record is replayed (0 means 1).",
)
flags.DEFINE_enum(
    "aspired_version_policy",
    "availability_preserving",
    ["availability_preserving", "resource_preserving"],
    "Beyond upstream: resource_preserving unloads the old "
    "version before loading the new one (never two loaded).",
)
flags.DEFINE_integer(
    "total_model_memory_limit_bytes",
    0,
    "Beyond upstream: RAM budget for loaded models (estimate "
    "1.2 x version dir size); 0 = unlimited.",
)
# TensorFlow session.
flags.DEFINE_integer(
    "tensorflow_session_parallelism",
    0,
    "Threads for both intra- and inter-op parallelism; 0 = " "auto.",
)
flags.DEFINE_integer(
    "tensorflow_intra_op_parallelism", 0, "Intra-op parallelism; 0 = auto."
)
flags.DEFINE_integer(
    "tensorflow_inter_op_parallelism", 0, "Inter-op parallelism; 0 = auto."
)
flags.DEFINE_bool(
    "enable_signature_method_name_check",
    False,
    "Require signature method_name to be predict, classify or "
    "regress to match the API; leave off for TF2 models.",
)
flags.DEFINE_string(
    "tensorflow_session_config_file",
    "",
    "Text-format tensorflow.ConfigProto for sessions; the "
    "parallelism flags override it.",
)
flags.DEFINE_float(
    "per_process_gpu_memory_fraction",
    0.0,
    "Fraction of GPU memory each process may take (GPU "
    "builds); 0 lets TensorFlow decide.",
)
# Batching.
flags.DEFINE_bool(
    "enable_batching",
    False,
    "Batch concurrent requests to each model on a shared pool "
    "of batch threads.",
)
flags.DEFINE_string(
    "batching_parameters_file",
    "",
    "Text-format BatchingParameters; needs --enable_batching.",
)
flags.DEFINE_bool(
    "enable_per_model_batching_parameters",
    False,
    "Batch only versions that ship batching_params.pbtxt, with "
    "those settings (the thread pool still comes from "
    "--batching_parameters_file).",
)
# TF Lite.
flags.DEFINE_bool(
    "prefer_tflite_model",
    False,
    "EXPERIMENTAL: serve <version>/model.tflite instead of the "
    "SavedModel when that file is present.",
)
flags.DEFINE_integer(
    "num_tflite_pools",
    _CPUS,
    "EXPERIMENTAL: TF Lite interpreter pools per model.",
)
flags.DEFINE_integer(
    "num_tflite_interpreters_per_pool",
    1,
    "EXPERIMENTAL: TF Lite interpreters in each pool; a "
    "model runs at most pools x this requests at once.",
)
# Tracing (beyond upstream).
flags.DEFINE_string(
    "otlp_traces_endpoint",
    "",
    "Beyond upstream: export OpenTelemetry traces of Predict, Classify and "
    "Regress over OTLP/HTTP (protobuf) to this URL, e.g. "
    "http://collector:4318/v1/traces; empty: no tracing.",
)
flags.DEFINE_float(
    "trace_sampling_ratio",
    1.0,
    "Beyond upstream: fraction of new traces sampled (a caller's sampled "
    "traceparent is always followed).",
    lower_bound=0.0,
    upper_bound=1.0,
)
# Request logging (beyond upstream: upstream's binary has no log collector).
flags.DEFINE_integer(
    "request_log_max_file_bytes",
    128 << 20,
    "Beyond upstream: a request log file (logging_config, collector type "
    "tfrecord) is closed and the next one opened past this size.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "request_log_max_file_age_seconds",
    3600,
    "Beyond upstream: ... or once it is this old.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "request_log_queue_max_entries",
    1024,
    "Beyond upstream: sampled requests waiting to be written; past it (or "
    "past --request_log_queue_max_bytes) they are dropped and counted as "
    "request_log_count{status_code=RESOURCE_EXHAUSTED}.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "request_log_queue_max_bytes",
    64 << 20,
    "Beyond upstream: tensor bytes the queued sampled requests may hold.",
    lower_bound=1,
)
flags.DEFINE_bool(
    "enable_profiler",
    True,
    "Serve TensorFlow's profiler service (tensorflow.ProfilerService) on "
    "the gRPC port, for TensorBoard's 'Capture profile'.",
)
flags.DEFINE_integer(
    "profiler_max_duration_ms",
    300_000,
    "Beyond upstream: the longest trace a profiler request may ask for.",
)
# Upstream flags with no effect here (a warning is logged when set).
flags.DEFINE_bool("flush_filesystem_caches", True, "No effect.")
flags.DEFINE_bool(
    "remove_unused_fields_from_bundle_metagraph", True, "No effect."
)
flags.DEFINE_string("thread_pool_factory_config_file", "", "No effect.")
flags.DEFINE_string("mixed_precision", "", "No effect.")
flags.DEFINE_bool("xla_cpu_compilation_enabled", False, "No effect.")
flags.DEFINE_bool("xla_gpu_compilation_enabled", False, "No effect.")
flags.DEFINE_bool("skip_initialize_tpu", False, "No effect.")
flags.DEFINE_bool(
    "enable_status_page",
    True,
    "Beyond upstream: serve the live status page at / and /status, and its "
    "JSON at /v1/status, on the REST port.",
)
flags.DEFINE_bool("version", False, "Print the version and exit.")
flags.DEFINE_enum(
    "log_format",
    "text",
    ["text", "json"],
    "Beyond upstream: json writes the server's logs as one JSON object per "
    "line (time, level, message, source, model and version where a line "
    "names one); TensorFlow's own C++ lines keep their format.",
)
# Beyond upstream: several serving processes on one host.
flags.DEFINE_integer(
    "num_workers",
    1,
    "Beyond upstream: serving processes sharing --port and "
    "--rest_api_port, each with its own copy of the models, "
    "under a supervisor that restarts one that dies; 0: one "
    "per CPU. 1 (default) runs a single process, as upstream.",
    lower_bound=0,
)

flags.DEFINE_float(
    "shutdown_grace_seconds",
    30.0,
    "Beyond upstream: on SIGTERM or SIGINT, in-flight requests get this "
    "long to finish; the process exits (code 0) at most 5 s later whatever "
    "still runs. A second signal exits at once.",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "worker_health_timeout_seconds",
    10.0,
    "Beyond upstream, with --num_workers > 1: a worker whose event loop "
    "does not answer the supervisor's health check within this is killed "
    "and replaced. 0: no health checks.",
    lower_bound=0.0,
)
# Beyond upstream: the Open Inference Protocol's model repository extension.
flags.DEFINE_bool(
    "enable_model_control_api",
    False,
    "Beyond upstream: let the Open Inference Protocol's model repository "
    "API (POST /v2/repository/models/{m}/load and /unload, and the gRPC "
    "RepositoryModelLoad/Unload) load and unload single models. Off by "
    "default: it changes what the server serves, unauthenticated.",
)

FLAGS = flags.FLAGS


def _parse_flags(argv: list[str]) -> list[str]:
  """Upstream prints 'unknown argument' for stray args and keeps running."""
  try:
    rest = FLAGS(argv, known_only=True)
  except flags.Error as exc:
    # One line, as every other start-up failure (no usage dump).
    print(
        f"Failed to start server. Error: INVALID_ARGUMENT: {exc}",
        file=sys.stderr,
    )
    sys.exit(1)
  for arg in rest[1:]:
    print(
        f"unknown argument: {arg}\n{FLAGS.main_module_help()}", file=sys.stderr
    )
  return rest[:1]


def _import_tensorflow() -> None:
  """TensorFlow's import, with a CPU build's cuInit error logged as INFO."""
  from tensorflow_serving.model_servers import tensorflow_startup  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.model_servers import version  # pylint: disable=g-import-not-at-top

  tensorflow_startup.import_tensorflow(expect_gpu=version.prefers_gpu())


def main(argv: list[str]) -> int:
  del argv
  # First, so that a signal during the imports below is never lost.
  shutdown.install(FLAGS.shutdown_grace_seconds)
  from tensorflow_serving.util import log_format  # pylint: disable=g-import-not-at-top

  log_format.use(FLAGS.log_format)
  if FLAGS.num_workers != 1 and not FLAGS.version:
    # A supervisor (no TensorFlow), or one of the workers it starts.
    from tensorflow_serving.model_servers.workers import launch  # pylint: disable=g-import-not-at-top

    return launch.main(FLAGS)
  # Imports that pull in TensorFlow wait until flags are parsed, so --help and
  # flag errors are instant.
  if not FLAGS.version:
    _import_tensorflow()
  from tensorflow_serving.model_servers import server_options  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.model_servers import version  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.util import status  # pylint: disable=g-import-not-at-top

  if FLAGS.version:
    print(version.version_text())
    return 0
  try:
    core_options, server_opts = server_options.from_flags(FLAGS)
  except server_options.FlagError as exc:
    return server_options.start_failure(status.invalid_argument(str(exc)))
  return server_options.run(core_options, server_opts)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
