"""Turns the binary's flags into ServerCore and Server options, and runs."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import os
import ssl
import sys
import threading

from absl import logging
from google.protobuf import text_format
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from tensorflow_serving.batching import batching_options
from tensorflow_serving.batching import batching_session
from tensorflow_serving.batching import prometheus_metrics
from tensorflow_serving.batching import shared_batch_scheduler
from tensorflow_serving.core import availability_preserving_policy
from tensorflow_serving.core import request_log_writer
from tensorflow_serving.core import resource_preserving_policy
from tensorflow_serving.core import tfrecord_log_collector
from tensorflow_serving.model_servers import model_config
from tensorflow_serving.model_servers import rest_server
from tensorflow_serving.model_servers import server as server_lib
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.model_servers import shutdown
from tensorflow_serving.model_servers import version
from tensorflow_serving.model_servers.status_page import routes as status_page
from tensorflow_serving.servables.tensorflow import device
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.servables.tensorflow import saved_model_loader
from tensorflow_serving.sources.storage_path.storage import file_systems
from tensorflow_serving.sources.storage_path.storage import version_cache
from tensorflow_serving.util import config_protos
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status
from tensorflow_serving.util.net import tls
from tensorflow_serving.util.net.http1 import server as http1_server


class FlagError(Exception):
  """A flag combination upstream rejects at start-up."""


def session_config_from_flags(flags) -> config_pb2.ConfigProto:
  """ConfigProto from --tensorflow_session_config_file, then the flags."""
  config = config_pb2.ConfigProto()
  if flags.tensorflow_session_config_file:
    try:
      config = config_protos.parse_text_file(
          flags.tensorflow_session_config_file, config_pb2.ConfigProto
      )
    except (OSError, text_format.ParseError) as exc:
      raise FlagError(
          "Error parsing text-format tensorflow.ConfigProto: " f"{exc}"
      ) from exc
  if flags.per_process_gpu_memory_fraction:
    config.gpu_options.per_process_gpu_memory_fraction = (
        flags.per_process_gpu_memory_fraction
    )
  if flags.tensorflow_session_parallelism:
    if (
        flags.tensorflow_intra_op_parallelism
        or flags.tensorflow_inter_op_parallelism
    ):
      raise FlagError(
          "Either configure tensorflow_session_parallelism or "
          "(tensorflow_intra_op_parallelism, tensorflow_inter_op_parallelism)"
          ". Both cannot be set."
      )
    config.intra_op_parallelism_threads = flags.tensorflow_session_parallelism
    config.inter_op_parallelism_threads = flags.tensorflow_session_parallelism
  else:
    if flags.tensorflow_intra_op_parallelism:
      config.intra_op_parallelism_threads = (
          flags.tensorflow_intra_op_parallelism
      )
    if flags.tensorflow_inter_op_parallelism:
      config.inter_op_parallelism_threads = (
          flags.tensorflow_inter_op_parallelism
      )
  return config


def from_flags(
    flags,
) -> tuple[server_core_lib.ServerCoreOptions, server_lib.ServerOptions]:
  if not flags.port and not flags.grpc_socket_path:
    raise FlagError(
        "At least one of server_options.grpc_port or "
        "server_options.grpc_socket_path must be set."
    )
  if flags.model_config_file:
    try:
      config = model_config.parse_model_server_config(flags.model_config_file)
    except (OSError, model_config.ConfigError) as exc:
      raise FlagError(str(exc)) from exc
  elif flags.model_base_path:
    config = model_config.single_model_config(
        flags.model_name, flags.model_base_path
    )
  else:
    raise FlagError(
        "Both server_options.model_base_path and "
        "server_options.model_config_file are empty!"
    )

  example_input.set_signature_method_name_check(
      flags.enable_signature_method_name_check
  )
  placement = device.select_placement(version.prefers_gpu())
  batching = batching_config_from_flags(flags)
  tf_config = saved_model_loader.SavedModelConfig(
      tags=tuple(t for t in flags.saved_model_tags.split(",") if t),
      session_config=session_config_from_flags(flags),
      placement=placement,
      enable_model_warmup=flags.enable_model_warmup,
      num_request_iterations_for_warmup=max(
          1, flags.num_request_iterations_for_warmup
      ),
      prefer_tflite_model=flags.prefer_tflite_model,
      num_tflite_pools=flags.num_tflite_pools,
      num_tflite_interpreters_per_pool=flags.num_tflite_interpreters_per_pool,
      batching=batching,
  )
  if flags.aspired_version_policy == "resource_preserving":
    policy = resource_preserving_policy.ResourcePreservingPolicy()
  else:
    policy = availability_preserving_policy.AvailabilityPreservingPolicy()
  retry_interval_s = max(0.0, flags.load_retry_interval_micros / 1e6)
  core_options = server_core_lib.ServerCoreOptions(
      model_server_config=config,
      platform_adapters={
          server_core_lib.TENSORFLOW_PLATFORM: functools.partial(
              saved_model_loader.SavedModelBundleSourceAdapter, tf_config
          )
      },
      file_system_poll_wait_seconds=flags.file_system_poll_wait_seconds,
      storage=file_systems.StorageOptions(
          cache=version_cache.CacheOptions(
              root=flags.model_cache_dir,
              max_bytes=max(0, flags.model_cache_size_bytes),
              download_timeout_s=max(
                  0.001, flags.model_download_timeout_seconds
              ),
              download_retries=max(0, flags.model_download_retries),
          ),
          request_timeout_s=max(0.001, flags.storage_request_timeout_seconds),
      ),
      aspired_version_policy=policy,
      num_load_threads=flags.num_load_threads,
      num_unload_threads=flags.num_unload_threads,
      max_num_load_retries=flags.max_num_load_retries,
      load_retry_interval_s=retry_interval_s,
      total_model_memory_limit_bytes=(
          flags.total_model_memory_limit_bytes or None
      ),
      allow_version_labels_for_unavailable_models=(
          flags.allow_version_labels_for_unavailable_models
      ),
      log_collectors={
          tfrecord_log_collector.TYPE: tfrecord_log_collector.factory(
              tfrecord_log_collector.RotationOptions(
                  max_file_bytes=flags.request_log_max_file_bytes,
                  max_file_age_s=flags.request_log_max_file_age_seconds,
              )
          )
      },
      request_log_queue=request_log_writer.QueueOptions(
          max_entries=flags.request_log_queue_max_entries,
          max_bytes=flags.request_log_queue_max_bytes,
      ),
      saved_model_tags=tf_config.tags,
  )
  server_options = server_lib.ServerOptions(
      grpc_port=flags.port,
      grpc_socket_path=flags.grpc_socket_path,
      rest_api_port=flags.rest_api_port,
      grpc_max_threads=flags.grpc_max_threads,
      enable_serialization_as_tensor_content=(
          flags.enable_serialization_as_tensor_content
      ),
      grpc_channel_arguments=parse_grpc_channel_arguments(
          flags.grpc_channel_arguments
      ),
      enable_grpc_healthcheck_service=flags.enable_grpc_healthcheck_service,
      enable_profiler=flags.enable_profiler,
      profiler_max_duration_ms=flags.profiler_max_duration_ms,
      http=rest_server.HttpOptions(
          timeout_s=(
              flags.rest_api_timeout_in_ms / 1000.0
              if flags.rest_api_timeout_in_ms > 0
              else None
          ),
          enable_cors=flags.rest_api_enable_cors_support,
          prometheus_path=prometheus_path(flags.monitoring_config_file),
          limits=rest_limits_from_flags(flags),
      ),
      grpc_http2_engine=flags.grpc_http2_engine,
      model_config_file=flags.model_config_file,
      otlp_traces_endpoint=flags.otlp_traces_endpoint,
      trace_sampling_ratio=flags.trace_sampling_ratio,
      model_config_file_poll_wait_seconds=(
          flags.model_config_file_poll_wait_seconds
      ),
      model_config_reload_timeout_s=(
          flags.model_config_reload_timeout_seconds or None
      ),
      shutdown_grace_s=flags.shutdown_grace_seconds,
      enable_model_control_api=getattr(
          flags, "enable_model_control_api", False
      ),
      max_pending_requests=max(1, flags.max_pending_requests),
      shed_by_deadline=flags.shed_by_deadline,
  )
  _apply_ssl_config(flags, server_options)
  _apply_rest_ssl_config(flags, server_options)
  server_options.model_service_token = model_service_token(flags)
  _warn_no_op_flags(flags)
  server_options.status_page = status_page.options_from_flags(
      flags, server_options, workers=getattr(flags, "num_workers", 1) or 1
  )
  return core_options, server_options


def rest_limits_from_flags(flags) -> http1_server.Http1Limits:
  """The HTTP/1.1 engine's sizes and timeouts from the --rest_api_* flags."""
  return http1_server.Http1Limits(
      max_url_bytes=flags.rest_api_max_url_bytes,
      max_header_bytes=flags.rest_api_max_header_bytes,
      max_body_bytes=flags.rest_api_max_body_bytes,
      max_server_buffer_bytes=max(
          flags.rest_api_max_buffer_bytes, flags.rest_api_max_body_bytes
      ),
      header_timeout_s=flags.rest_api_header_timeout_ms / 1000.0,
      body_timeout_s=flags.rest_api_body_timeout_ms / 1000.0,
      keepalive_timeout_s=flags.rest_api_keepalive_timeout_ms / 1000.0,
  )


def batching_config_from_flags(flags) -> batching_session.BatchingConfig | None:
  """The shared batch scheduler and queue options, if batching is on."""
  if flags.batching_parameters_file and not flags.enable_batching:
    raise FlagError(
        "server_options.batching_parameters_file is set without "
        "setting server_options.enable_batching to true."
    )
  if not flags.enable_batching:
    return None
  params = config_protos.BatchingParameters()
  if flags.batching_parameters_file:
    try:
      params = config_protos.parse_text_file(
          flags.batching_parameters_file, config_protos.BatchingParameters
      )
    except (OSError, text_format.ParseError) as exc:
      raise FlagError(
          "Error parsing text-format "
          f"tensorflow.serving.BatchingParameters: {exc}"
      ) from exc
  else:
    params.thread_pool_name.value = batching_options.DEFAULT_THREAD_POOL_NAME
  try:
    options = batching_options.BatchingOptions.from_proto(params)
  except status.ServingError as exc:
    raise FlagError(exc.message) from exc
  return batching_session.BatchingConfig(
      scheduler=shared_batch_scheduler.SharedBatchScheduler.from_options(
          options
      ),
      options=options,
      enable_per_model_batching_parameters=(
          flags.enable_per_model_batching_parameters
      ),
      metrics=prometheus_metrics.PrometheusBatchingMetrics(
          options.thread_pool_name
      ),
  )


def parse_grpc_channel_arguments(
    text: str,
) -> tuple[tuple[str, str | int], ...]:
  """`k=v,k2=v2` -> gRPC server options; values that parse as int are ints."""
  args = []
  for item in filter(None, (part.strip() for part in text.split(","))):
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise FlagError(
          f"Invalid --grpc_channel_arguments entry: {item!r} "
          "(expected key=value)"
      )
    try:
      args.append((key, int(value)))
    except ValueError:
      args.append((key, value))
  return tuple(args)


def prometheus_path(monitoring_config_file: str) -> str | None:
  """The Prometheus path when --monitoring_config_file enables it, else None."""
  if not monitoring_config_file:
    return None
  try:
    config = config_protos.parse_text_file(
        monitoring_config_file, config_protos.MonitoringConfig
    )
  except (OSError, text_format.ParseError) as exc:
    raise FlagError(
        "Error parsing text-format "
        f"tensorflow.serving.MonitoringConfig: {exc}"
    ) from exc
  if not config.prometheus_config.enable:
    return None
  return config.prometheus_config.path or metrics.DEFAULT_PATH


def _apply_ssl_config(flags, options: server_lib.ServerOptions) -> None:
  if flags.use_alts_credentials and flags.ssl_config_file:
    raise FlagError(
        "Either use_alts_credentials must be false or "
        "ssl_config_file must be empty."
    )
  if flags.use_alts_credentials:
    raise FlagError("--use_alts_credentials is not supported by this server")
  if not flags.ssl_config_file:
    return
  try:
    ssl = config_protos.parse_text_file(
        flags.ssl_config_file, config_protos.SSLConfig
    )
  except (OSError, text_format.ParseError) as exc:
    raise FlagError(
        "Error parsing text-format tensorflow.serving.SSLConfig: " f"{exc}"
    ) from exc
  options.ssl_server_key = ssl.server_key
  options.ssl_server_cert = ssl.server_cert
  options.ssl_custom_ca = ssl.custom_ca or None
  options.ssl_client_verify = ssl.client_verify


# Where the ModelService token comes from when --model_service_token_file is
# not given.
MODEL_SERVICE_TOKEN_ENV = "TF_SERVING_MODEL_SERVICE_TOKEN"


def model_service_token(flags) -> str | None:
  """The token state-changing ModelService calls need, or None (open).

  The file's or variable's content, surrounding whitespace stripped; set
  but empty is an error rather than an open server.
  """
  path = flags.model_service_token_file
  if path:
    try:
      with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
      raise FlagError(f"Cannot read --model_service_token_file: {exc}") from exc
    where = f"--model_service_token_file {path}"
  elif MODEL_SERVICE_TOKEN_ENV in os.environ:
    token = os.environ[MODEL_SERVICE_TOKEN_ENV].strip()
    where = MODEL_SERVICE_TOKEN_ENV
  else:
    return None
  if not token:
    raise FlagError(f"The ModelService token in {where} is empty")
  return token


def _apply_rest_ssl_config(flags, options: server_lib.ServerOptions) -> None:
  """Beyond upstream: HTTPS on the REST port, from an SSLConfig file."""
  if not flags.rest_api_ssl_config_file:
    return
  try:
    config = config_protos.parse_text_file(
        flags.rest_api_ssl_config_file, config_protos.SSLConfig
    )
    context = tls.server_context(
        config.server_cert,
        config.server_key,
        config.custom_ca or None,
        config.client_verify,
        ["http/1.1"],
    )
  except (OSError, text_format.ParseError, ssl.SSLError) as exc:
    raise FlagError(
        f"Error in --rest_api_ssl_config_file {flags.rest_api_ssl_config_file}"
        f": {exc}"
    ) from exc
  options.http = dataclasses.replace(options.http, ssl_context=context)


# Upstream flags with no effect here: accepted so command lines keep working.
NO_OP_FLAGS = (
    "flush_filesystem_caches",
    "remove_unused_fields_from_bundle_metagraph",
    "thread_pool_factory_config_file",
    "mixed_precision",
    "xla_cpu_compilation_enabled",
    "xla_gpu_compilation_enabled",
    "skip_initialize_tpu",
    "platform_config_file",
)


def _warn_no_op_flags(flags) -> None:
  for name in NO_OP_FLAGS:
    if flags[name].present:
      logging.warning("--%s has no effect in this server.", name)


def start_failure(error: status.ServingError) -> int:
  """Upstream's one-line start-up failure (no traceback); the exit code."""
  line = f"Failed to start server. Error: {error.code.name}: {error.message}"
  logging.error("%s", line)
  print(line, file=sys.stderr, flush=True)
  return 1


def run(
    core_options: server_core_lib.ServerCoreOptions,
    server_options: server_lib.ServerOptions,
) -> int:
  """Loads every model, then serves until SIGINT/SIGTERM. Returns exit code.

  The initial load runs on its own thread so that a signal stops the server
  in every state: while a version loads, or waits between load retries
  (which would otherwise hold the process for retries x interval).
  """
  # What is imported by now (TensorFlow alone is ~300k objects) lives as long
  # as the process. Freezing it stops every full collection, such as the one
  # each model unload runs to free its graph, from rescanning it with the GIL
  # held: that stalled all requests in flight for ~150 ms per version swap.
  metrics.set_build_info(
      version.SERVER_VERSION,
      version.BUILD_DEVICE,
      version.COMPILATION_MODE,
      tf.__version__,
  )
  gc.collect()
  gc.freeze()
  stop = threading.Event()
  # A stop while loading: the watchdog (shutdown.py) bounds core.stop(),
  # which may wait for a load TensorFlow cannot interrupt.
  unregister = shutdown.on_stop(stop.set)
  core = server_core_lib.ServerCore(core_options)
  loaded = threading.Event()
  failure: list[status.ServingError] = []

  def initial_load() -> None:
    try:
      core.load_initial_config()
    except status.ServingError as exc:
      failure.append(exc)
    finally:
      loaded.set()

  threading.Thread(
      target=initial_load, name="initial_load", daemon=True
  ).start()
  while not loaded.wait(0.1):
    if stop.is_set():
      logging.info("Stopping the model server while models load.")
      core.stop()
      return 0
  if failure:
    core.stop()
    return start_failure(failure[0])
  unregister()
  if stop.is_set():
    core.stop()
    return 0
  server = server_lib.Server(core, server_options)
  try:
    _run_event_loop(server.run_until_signalled())
  except server_lib.StartError as exc:
    return start_failure(exc.error)
  return 0


def _run_event_loop(main) -> None:
  """Runs `main` on uvloop when installed: its loop costs less per request."""
  try:
    import uvloop  # pylint: disable=g-import-not-at-top
  except ImportError:
    asyncio.run(main)
    return
  with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main)
