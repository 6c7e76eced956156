"""ServerCore: the model set of one server, shared by the gRPC and REST APIs.

It turns a ModelServerConfig into the upstream lifecycle pipeline
    FileSystemStoragePathSource -> (route by model platform) -> SourceAdapter
    -> AspiredVersionsManager -> ServableStateMonitor
and resolves a request's ModelSpec to a servable handle. It knows nothing of
TensorFlow (platforms come in as adapter factories) nor of any transport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import concurrent.futures
import dataclasses
import os
import threading
import time

from absl import logging

from tensorflow_serving.apis import model_pb2
from tensorflow_serving.config import (
    file_system_storage_path_source_pb2 as fs_pb2,
)
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.core import aspired_version_policy as policy_lib
from tensorflow_serving.core import aspired_versions_manager
from tensorflow_serving.core import availability_preserving_policy
from tensorflow_serving.core import event_bus as event_bus_lib
from tensorflow_serving.core import log_collector
from tensorflow_serving.core import request_log_writer
from tensorflow_serving.core import servable_data as servable_data_lib
from tensorflow_serving.core import servable_handle
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import servable_state
from tensorflow_serving.core import servable_state_monitor
from tensorflow_serving.core import server_request_logger
from tensorflow_serving.core import source_adapter as source_adapter_lib
from tensorflow_serving.core import tfrecord_log_collector
from tensorflow_serving.resources import (
    resource_tracker as resource_tracker_lib,
)
from tensorflow_serving.resources import resources
from tensorflow_serving.sources.storage_path import (
    file_system_storage_path_source as fs_source,
)
from tensorflow_serving.sources.storage_path.storage import file_systems
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ManagerState = servable_state.ManagerState
ServableRequest = servable_request.ServableRequest

TENSORFLOW_PLATFORM = "tensorflow"


@dataclasses.dataclass
class ServerCoreOptions:
  """Everything ServerCore needs; the binary fills it from flags."""

  model_server_config: ModelServerConfig
  # Platform name -> factory of the adapter turning a version path into a Loader.
  platform_adapters: Mapping[
      str, Callable[[], source_adapter_lib.SourceAdapter]
  ]
  file_system_poll_wait_seconds: int = 30
  # Remote model stores (s3://) and their local version cache.
  storage: file_systems.StorageOptions = dataclasses.field(
      default_factory=file_systems.StorageOptions
  )
  aspired_version_policy: policy_lib.AspiredVersionPolicy = dataclasses.field(
      default_factory=availability_preserving_policy.AvailabilityPreservingPolicy
  )
  manage_state_interval_s: float = 0.1
  num_load_threads: int = 0
  num_unload_threads: int = 0
  # Upstream raises load threads to 4 x CPUs for the initial load only.
  num_initial_load_threads: int = 4 * (os.cpu_count() or 1)
  max_num_load_retries: int = 5
  load_retry_interval_s: float = 60.0
  total_model_memory_limit_bytes: int | None = None
  allow_version_labels: bool = True
  allow_version_labels_for_unavailable_models: bool = False
  servable_versions_always_present: bool = False
  # Request logging (ModelConfig.logging_config): the collector types a
  # config may name, the queue's bounds, this process's stream name in log
  # file names ("" alone, "worker<i>" under --num_workers), and the
  # MetaGraph tags each log's metadata records.
  log_collectors: Mapping[str, log_collector.Factory] = dataclasses.field(
      default_factory=lambda: {
          tfrecord_log_collector.TYPE: tfrecord_log_collector.factory(
              tfrecord_log_collector.RotationOptions()
          )
      }
  )
  request_log_queue: request_log_writer.QueueOptions = dataclasses.field(
      default_factory=request_log_writer.QueueOptions
  )
  request_log_stream: str = ""
  # The per-model control API's changes to start with, on top of
  # model_server_config (name -> its config, or None: unloaded); a restarted
  # --num_workers worker gets the ones its siblings applied.
  model_overrides: Mapping[str, model_server_config_pb2.ModelConfig | None] = (
      dataclasses.field(default_factory=dict)
  )
  saved_model_tags: tuple[str, ...] = ("serve",)


class ServerCore:
  """Owns the lifecycle pipeline and the current ModelServerConfig."""

  def __init__(self, options: ServerCoreOptions):
    self._options = options
    self._config = ModelServerConfig()
    self._config_lock = threading.RLock()
    # The last whole config (initial, ReloadConfig, a polled file), and the
    # per-model control API's changes on top of it: name -> the model's
    # config, or None for a model it unloaded.
    self._base_config = ModelServerConfig()
    self._overrides: dict[str, model_server_config_pb2.ModelConfig | None] = {}
    # The last config the API loaded per name, for a later load without one.
    self._api_configs: dict[str, model_server_config_pb2.ModelConfig] = {}
    self._platform_of: dict[str, str] = {}
    # Model name -> {label: version}. Replaced whole, read without a lock.
    self._labels: dict[str, dict[str, int]] | None = None

    self.event_bus = event_bus_lib.EventBus()
    self.monitor = servable_state_monitor.ServableStateMonitor(self.event_bus)
    # After the monitor's subscription, so it has seen each event first.
    self._loaded_versions = self.event_bus.subscribe(self._count_loaded)
    # Version -> when its load began (time.monotonic), for load metrics.
    self._load_started: dict[servable_id_lib.ServableId, float] = {}
    self._load_metrics = self.event_bus.subscribe(self._record_load)
    budget = None
    if options.total_model_memory_limit_bytes is not None:
      budget = resources.ResourceAllocation(
          {resources.RAM_BYTES: options.total_model_memory_limit_bytes}
      )
    self.manager = aspired_versions_manager.AspiredVersionsManager(
        policy=options.aspired_version_policy,
        manage_state_interval_s=options.manage_state_interval_s,
        num_load_threads=options.num_load_threads,
        num_unload_threads=options.num_unload_threads,
        max_num_load_retries=options.max_num_load_retries,
        load_retry_interval_s=options.load_retry_interval_s,
        resource_tracker=resource_tracker_lib.ResourceTracker(budget),
        event_bus=self.event_bus,
    )
    self._adapters: dict[str, source_adapter_lib.SourceAdapter] = {}
    for platform, factory in options.platform_adapters.items():
      adapter = factory()
      adapter.set_aspired_versions_callback(
          self.manager.get_aspired_versions_callback()
      )
      self._adapters[platform] = adapter
    self._source: fs_source.FileSystemStoragePathSource | None = None
    self.request_logger = server_request_logger.ServerRequestLogger(
        request_log_writer.RequestLogWriter(
            options.request_log_queue, metrics.record_request_log
        ),
        options.log_collectors,
        options.request_log_stream,
        options.saved_model_tags,
    )
    self.manager.start()

  # --- Config ---------------------------------------------------------------

  @classmethod
  def create(cls, options: ServerCoreOptions) -> ServerCore:
    """Builds the core and blocks until every configured model is loaded.

    Raises the ServingError upstream's ServerCore::Create would return when a
    model fails to load; the caller (main) then exits non-zero.
    """
    core = cls(options)
    try:
      core.load_initial_config()
    except BaseException:
      core.stop()
      raise
    return core

  def load_initial_config(self) -> None:
    """Loads the options' config with upstream's wider initial load pool.

    Blocks until every model is available; `stop` from another thread ends
    the wait (retry back-offs included).
    """
    options = self._options
    with self._config_lock:
      self._overrides = dict(options.model_overrides)
      self._api_configs.update(
          (name, m) for name, m in self._overrides.items() if m is not None
      )
    self.manager.set_num_load_threads(options.num_initial_load_threads)
    try:
      self.reload_config(options.model_server_config, keep_model_overrides=True)
    finally:
      self.manager.set_num_load_threads(options.num_load_threads)

  @property
  def config(self) -> ModelServerConfig:
    with self._config_lock:
      out = ModelServerConfig()
      out.CopyFrom(self._config)
      return out

  def reload_config(
      self,
      new_config: ModelServerConfig,
      timeout_s: float | None = None,
      keep_model_overrides: bool = False,
  ) -> None:
    """Replaces the served model set; blocks until new models are available.

    `timeout_s` bounds the wait (None: until they load or fail, as upstream).
    Past it the new config stays in force and DEADLINE_EXCEEDED says which
    models are still awaited and why.
    """
    self.apply_config(new_config, keep_model_overrides).result(timeout_s)

  def apply_config(
      self, new_config: ModelServerConfig, keep_model_overrides: bool = False
  ) -> ConfigWait:
    """Puts a config in force now; the returned wait ends when it is served.

    Applying is quick and one at a time (the config lock); waiting for the
    new models takes no lock and no thread, so that one reload whose model
    never gets a version holds up neither a later, correcting reload nor
    anything else. Validation errors raise here, as upstream's ReloadConfig.

    This is upstream's whole-config semantics: what the per-model control
    API loaded or unloaded is forgotten, unless `keep_model_overrides` (a
    polled --model_config_file), where the API's changes win for the names
    they touched.
    """
    with self._config_lock:
      if not keep_model_overrides:
        self._overrides.clear()
      new_models = self._apply_config(new_config)
      if new_config.WhichOneof("config") is not None:
        self._base_config = ModelServerConfig()
        self._base_config.CopyFrom(new_config)
    return ConfigWait(self, new_models)

  def _apply_config(self, base_config: ModelServerConfig) -> list:
    """Serves `base_config` with the overrides; returns the models added."""
    new_config = self._with_overrides(base_config)
    with self._config_lock:
      kind = new_config.WhichOneof("config")
      if kind is None:
        logging.info("Taking no action for empty config.")
        return []
      if kind != "model_config_list":
        raise status.unimplemented(
            "ModelServerConfig.custom_model_config is not supported"
        )
      old_kind = self._config.WhichOneof("config")
      if old_kind not in (None, "model_config_list"):
        raise status.failed_precondition(
            "Cannot transition to requested config. It is only legal to "
            "transition from one ModelConfigList to another."
        )
      models = list(new_config.model_config_list.config)
      platforms = self._validate(models)
      # Before anything changes: an unknown collector type fails the config.
      self.request_logger.update(
          {
              m.name: [m.logging_config]
              for m in models
              if m.HasField("logging_config")
          }
      )
      old_names = set(self._platform_of)
      self._config = ModelServerConfig()
      self._config.CopyFrom(new_config)
      self._update_labels(models)
      self._platform_of = platforms
      new_models = [m for m in models if m.name not in old_names]
      # A model served before has END versions: waiting for it to become
      # available must not take its last unload for this load's outcome.
      for m in new_models:
        self.monitor.forget_unloaded_servable_states(m.name)
      self._update_source(models)
      return new_models

  def _with_overrides(self, config: ModelServerConfig) -> ModelServerConfig:
    if not self._overrides:
      return config
    out = ModelServerConfig()
    out.CopyFrom(config)
    models = out.model_config_list.config
    kept = []
    for m in models:
      if m.name not in self._overrides:
        kept.append(m)
      elif self._overrides[m.name] is not None:
        kept.append(self._overrides[m.name])
    named = {m.name for m in models}
    kept += [
        m
        for name, m in self._overrides.items()
        if m is not None and name not in named
    ]
    out.model_config_list.ClearField("config")
    out.model_config_list.config.extend(kept)
    return out

  # --- Per-model control (beyond upstream) ------------------------------------

  def known_model_config(
      self, name: str
  ) -> model_server_config_pb2.ModelConfig | None:
    """The config this core last had for `name` (served or unloaded)."""
    with self._config_lock:
      override = self._overrides.get(name) or self._api_configs.get(name)
      if override is not None:
        return override
      for m in self._base_config.model_config_list.config:
        if m.name == name:
          return m
    return None

  def model_overrides(
      self,
  ) -> dict[str, model_server_config_pb2.ModelConfig | None]:
    """The per-model control API's changes on top of the whole config."""
    with self._config_lock:
      return dict(self._overrides)

  def apply_model_load(
      self, model: model_server_config_pb2.ModelConfig
  ) -> ConfigWait:
    """Serves `model` (added, or its config replaced) now; quick.

    The returned wait ends once the model is available, or with its load's
    failure. Validation errors raise here and change nothing.
    """
    with self._config_lock:
      previous = dict(self._overrides)
      self._overrides[model.name] = model
      try:
        self._apply_config(self._base_config)
      except BaseException:
        self._overrides = previous
        raise
      self._api_configs[model.name] = model
    return ConfigWait(self, [model])

  def load_model(
      self, model: model_server_config_pb2.ModelConfig, timeout_s: float
  ) -> None:
    """`apply_model_load`, then blocks until loaded (a thread's wait).

    Raises the load's failure, or DEADLINE_EXCEEDED after `timeout_s` (the
    model then goes on loading).
    """
    self.apply_model_load(model).result(timeout_s)

  def apply_model_unload(self, name: str) -> UnloadWait:
    """Stops serving `name` now; the wait ends once every version unloaded.

    NOT_FOUND when `name` is not served. Unloading waits for requests that
    hold a version, so the wait may take as long as they do.
    """
    with self._config_lock:
      served = {m.name for m in self._config.model_config_list.config}
      if name not in served:
        raise status.not_found(f"Model {name} is not being served")
      self._overrides[name] = None
      self._apply_config(self._base_config)
    return UnloadWait(self, name)

  def unload_model(self, name: str, timeout_s: float) -> None:
    """`apply_model_unload`, then blocks until unloaded (a thread's wait).

    After `timeout_s` this raises DEADLINE_EXCEEDED and the unload goes on.
    """
    self.apply_model_unload(name).result(timeout_s)

  def _validate(self, models) -> dict[str, str]:
    platforms: dict[str, str] = {}
    for m in models:
      if m.name in platforms:
        raise status.invalid_argument(
            f"Illegal to list model {m.name} multiple times in config list"
        )
      if not _is_absolute_or_uri(m.base_path):
        raise status.invalid_argument(
            f"Expected model {m.name} to have an absolute path or URI; got "
            f"base_path()={m.base_path}"
        )
      platform = m.model_platform
      if m.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if platform:
          raise status.invalid_argument(
              "Illegal setting both ModelServerConfig::model_type (deprecated)"
              f" and ModelServerConfig::model_platform, model name is {m.name}"
          )
        platform = TENSORFLOW_PLATFORM
      if not platform:
        raise status.invalid_argument(
            "Illegal setting neither ModelServerConfig::model_type (deprecated)"
            f" nor ModelServerConfig::model_platform, model name is {m.name}"
        )
      if platform not in self._adapters:
        raise status.invalid_argument(
            f"Model {m.name} requests unsupported platform {platform}"
        )
      old = self._platform_of.get(m.name)
      if old is not None and old != platform:
        raise status.invalid_argument(
            f"Illegal to change a model's platform. For model {m.name} "
            f"platform was {old} and new platform requested is {platform}"
        )
      platforms[m.name] = platform
    return platforms

  def _update_labels(self, models) -> None:
    new_labels: dict[str, dict[str, int]] = {}
    old_labels = self._labels or {}
    for m in models:
      if not m.version_labels:
        continue
      if not self._options.allow_version_labels:
        raise status.failed_precondition(
            "Model version labels are not currently allowed by the server."
        )
      for label, version in m.version_labels.items():
        unchanged = old_labels.get(m.name, {}).get(label) == version
        is_new = label not in old_labels.get(m.name, {})
        may_skip_check = (
            self._options.allow_version_labels_for_unavailable_models
            and (is_new or unchanged)
        )
        if not may_skip_check:
          state = self.monitor.get_state(
              servable_id_lib.ServableId(m.name, version)
          )
          if state is None or state.manager_state != ManagerState.AVAILABLE:
            raise status.failed_precondition(
                f"Request to assign label to version {version} of model "
                f"{m.name}, which is not currently available for inference"
            )
      new_labels[m.name] = dict(m.version_labels)
    self._labels = new_labels

  def _update_source(self, models) -> None:
    source_config = fs_pb2.FileSystemStoragePathSourceConfig(
        file_system_poll_wait_seconds=self._options.file_system_poll_wait_seconds,
        servable_versions_always_present=(
            self._options.servable_versions_always_present
        ),
    )
    for m in models:
      servable = source_config.servables.add(
          servable_name=m.name, base_path=m.base_path
      )
      if m.HasField("model_version_policy"):
        servable.servable_version_policy.CopyFrom(m.model_version_policy)
      else:
        servable.servable_version_policy.latest.num_versions = 1
    if self._source is None:
      self._source = fs_source.FileSystemStoragePathSource(
          source_config,
          file_systems=file_systems.FileSystems(self._options.storage),
      )
      self._source.set_aspired_versions_callback(self._route)
    else:
      self._source.update_config(source_config)

  def _route(self, name: str, versions) -> None:
    """Sends a model's aspired versions to its platform's adapter."""
    platform = self._platform_of.get(name)
    adapter = self._adapters.get(platform) if platform else None
    if adapter is not None:
      adapter.get_aspired_versions_callback()(name, versions)
      return
    # A model no longer configured: un-aspire its versions in the manager.
    if not versions:
      self.manager.get_aspired_versions_callback()(name, [])
      return
    error = status.invalid_argument(f"No platform found for model {name}")
    self.manager.get_aspired_versions_callback()(
        name,
        [servable_data_lib.ServableData.failed(v.id, error) for v in versions],
    )

  # --- Requests -------------------------------------------------------------

  def servable_request(
      self, model_spec: model_pb2.ModelSpec
  ) -> ServableRequest:
    """Resolves a ModelSpec (version, label or latest) to a ServableRequest."""
    name = model_spec.name
    if not name:
      raise status.invalid_argument("ModelSpec has no name specified.")
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
      return ServableRequest.specific(name, model_spec.version.value)
    if choice == "version_label":
      return ServableRequest.specific(
          name, self.version_for_label(name, model_spec.version_label)
      )
    return ServableRequest.latest(name)

  def version_for_label(self, name: str, label: str) -> int:
    labels = self._labels
    if labels is None:
      raise status.unavailable(f"Model labels does not init yet.{label}")
    version = labels.get(name, {}).get(label)
    if version is None:
      raise status.invalid_argument(
          f"Unrecognized servable version label: {label}"
      )
    return version

  def get_servable_handle(
      self, model_spec: model_pb2.ModelSpec
  ) -> servable_handle.ServableHandle:
    return self.manager.get_servable_handle(self.servable_request(model_spec))

  # --- Shutdown -------------------------------------------------------------

  def _count_loaded(self, state: servable_state.ServableState) -> None:
    """Keeps the loaded_versions gauge (beyond upstream) per model."""
    name = state.id.name
    available = sum(
        1
        for entry in self.monitor.get_version_states(name).values()
        if entry.state.manager_state == ManagerState.AVAILABLE
    )
    metrics.set_loaded_versions(name, available)

  def _record_load(self, state: servable_state.ServableState) -> None:
    """Load time (first attempt to AVAILABLE) and failed attempts, per model."""
    sid, manager_state = state.id, state.manager_state
    if manager_state == ManagerState.LOADING:
      if state.health is None:
        self._load_started.setdefault(sid, time.monotonic())
      else:
        metrics.record_model_load_failure(sid.name, state.health.code.name)
    elif manager_state == ManagerState.AVAILABLE:
      started = self._load_started.pop(sid, None)
      if started is not None:
        metrics.record_model_load(sid.name, (time.monotonic() - started) * 1e6)
    elif manager_state == ManagerState.END:
      self._load_started.pop(sid, None)
      if state.health is not None:
        metrics.record_model_load_failure(sid.name, state.health.code.name)

  def stop(self) -> None:
    """Stops polling, then unloads every servable."""
    if self._source is not None:
      self._source.stop()
    self.manager.stop()
    self.request_logger.stop()


class ConfigWait:
  """Waits for the models a config added: done, failed, or still awaited.

  A thin handle on a ServableStateMonitor notification. `result(timeout)`
  blocks a thread; `future` lets an event loop await it without one.
  Cancelling (or a timeout in `result`) withdraws the notification, so an
  abandoned wait leaves nothing behind.
  """

  def __init__(self, core: ServerCore, models) -> None:
    self._core = core
    self._base_paths = {m.name: m.base_path for m in models}
    self.requests: list[ServableRequest] = []
    for m in models:
      policy = m.model_version_policy
      if policy.WhichOneof("policy_choice") == "specific":
        self.requests += [
            ServableRequest.specific(m.name, v)
            for v in policy.specific.versions
        ]
      else:
        self.requests.append(ServableRequest.latest(m.name))
    # Left PENDING (never "running"), so that cancel() always works.
    self.future: concurrent.futures.Future[None] = concurrent.futures.Future()
    if not self.requests:
      self.future.set_result(None)
      return
    forget = core.monitor.notify_when_servables_reach_state(
        self.requests, ManagerState.AVAILABLE, self._on_reached
    )
    self.future.add_done_callback(lambda f: forget() if f.cancelled() else None)

  def _on_reached(self, ok: bool, states) -> None:
    try:
      self._settle(ok, states)
    except concurrent.futures.InvalidStateError:
      pass  # Cancelled meanwhile: nobody waits any more.

  def _settle(self, ok: bool, states) -> None:
    if ok:
      self.future.set_result(None)
      return
    failed = []
    for sid, state in sorted(states.items()):
      if state == ManagerState.AVAILABLE:
        continue
      full = self._core.monitor.get_state(sid)
      reason = full.health.message if full and full.health else "unknown"
      failed.append(f"{{{sid} due to error: {reason}}}, ")
    self.future.set_exception(
        status.unknown(
            f"{len(failed)} model(s) did not become available: "
            f"{{{''.join(failed)}}}"
        )
    )

  def result(self, timeout_s: float | None) -> None:
    """Blocks until the models are available; raises as `timed_out` says."""
    try:
      self.future.result(timeout_s)
    except concurrent.futures.TimeoutError:
      raise self.timed_out(timeout_s) from None

  def timed_out(self, timeout_s: float | None) -> status.ServingError:
    """Withdraws the wait; the DEADLINE_EXCEEDED naming what was awaited."""
    error = self.timed_out_error(timeout_s)
    self.future.cancel()
    return error

  def timed_out_error(self, timeout_s: float | None) -> status.ServingError:
    """DEADLINE_EXCEEDED naming the models still awaited, and why."""
    bound = "in time" if timeout_s is None else f"within {timeout_s:g} s"
    return status.deadline_exceeded(
        "The config is applied, but these models were not available "
        f"{bound}: {self.describe_pending()}. Each loads once it has a "
        "version; GetModelStatus shows their state."
    )

  def pending_names(self) -> list[str]:
    """Awaited models with no AVAILABLE version yet."""
    available = self._core.monitor.get_available_servable_names()
    return sorted({r.name for r in self.requests if r.name not in available})

  def describe_pending(self) -> str:
    """'name (why)' for each model still awaited, e.g. no version found."""
    parts = []
    for name in self.pending_names():
      versions = self._core.monitor.get_version_states(name)
      if versions:
        version, entry = next(iter(versions.items()))
        why = f"version {version} is {entry.state.manager_state.name}"
      else:
        why = (
            "no version directory found under base path "
            f"{self._base_paths.get(name, '?')}"
        )
      parts.append(f"{name} ({why})")
    return ", ".join(parts) or "none"


class UnloadWait:
  """Waits for every live version of one model to unload (END).

  The same shape as ConfigWait: `future` for an event loop, `result` for a
  thread, and cancelling withdraws the monitor notification.
  """

  def __init__(self, core: ServerCore, name: str) -> None:
    self.name = name
    self.future: concurrent.futures.Future[None] = concurrent.futures.Future()
    live = [
        ServableRequest.specific(name, version)
        for version in core.monitor.get_live_servable_states().get(name, {})
    ]
    if not live:
      self.future.set_result(None)
      return
    forget = core.monitor.notify_when_servables_reach_state(
        live, ManagerState.END, self._on_reached
    )
    self.future.add_done_callback(lambda f: forget() if f.cancelled() else None)

  def _on_reached(self, ok: bool, states) -> None:
    del ok, states  # END is the only state left to reach.
    try:
      self.future.set_result(None)
    except concurrent.futures.InvalidStateError:
      pass  # Cancelled meanwhile: nobody waits any more.

  def result(self, timeout_s: float | None) -> None:
    try:
      self.future.result(timeout_s)
    except concurrent.futures.TimeoutError:
      raise self.timed_out(timeout_s) from None

  def timed_out(self, timeout_s: float | None) -> status.ServingError:
    """Withdraws the wait; the DEADLINE_EXCEEDED to answer."""
    error = self.timed_out_error(timeout_s)
    self.future.cancel()
    return error

  def timed_out_error(self, timeout_s: float | None) -> status.ServingError:
    bound = "in time" if timeout_s is None else f"after {timeout_s:g} s"
    return status.deadline_exceeded(
        f"Model {self.name} is still unloading {bound}"
    )


def _is_absolute_or_uri(path: str) -> bool:
  return path.startswith("/") or "://" in path
