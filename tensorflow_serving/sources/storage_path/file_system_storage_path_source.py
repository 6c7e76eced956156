"""Source of servable version paths found by polling base directories.

Each configured servable has a base path whose numerically named children are
its versions (`/models/m/1`, `/models/m/2`, ...). The source lists them,
applies the servable's version policy and hands the chosen paths to the
aspired-versions callback, which *replaces* the aspired set for that servable.
Being stateless that way is what lets an unlisted version simply unload.

Behaviour follows upstream's file_system_storage_path_source.cc, with two
documented choices:

* Version names are parsed like `absl::SimpleAtoi` into an int64: surrounding
  ASCII whitespace and one leading `+` or `-` are accepted, anything else
  (`v1`, `1.0`, `0x1`, `tmp`, out-of-int64-range numbers) is not a version.
  Negative numbers therefore are versions, as upstream.
* When two children parse to the same number (`1` and `01`) every policy,
  `all` included, aspires one path per number: the name that sorts later
  wins. Upstream's `all` policy emits both, handing the manager two entries
  with one id, which it cannot serve meaningfully.
"""

from __future__ import annotations

from collections.abc import Iterable
import re
import threading
import time

from absl import logging

from tensorflow_serving.config import file_system_storage_path_source_pb2
from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_id
from tensorflow_serving.core import source
from tensorflow_serving.sources.storage_path.storage import file_system
from tensorflow_serving.sources.storage_path.storage import file_systems
from tensorflow_serving.util import status

FileSystemStoragePathSourceConfig = (
    file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig
)
ServableToMonitor = FileSystemStoragePathSourceConfig.ServableToMonitor

StoragePath = str

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
# absl::ascii_isspace set; [0-9] rather than \d so non-ASCII digits fail.
_VERSION_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")


def parse_version(name: str) -> int | None:
  """The int64 version a child name denotes, or None if it is not a version.

  Mirrors absl::SimpleAtoi (see the module docstring) so that the same
  directories count as versions here as in upstream's server.
  """
  match = _VERSION_RE.fullmatch(name)
  if match is None:
    return None
  value = int(match.group(1))
  if value < _INT64_MIN or value > _INT64_MAX:
    return None
  return value


def servable_id_from_version_dir(
    servable_name: str, version_dir: str
) -> servable_id.ServableId | None:
  """The ServableId for a version directory (path or bare name), if numeric.

  Only the last path component counts, so `/models/m/7/` gives version 7.
  """
  child = version_dir.rstrip("/")
  child = child[child.rfind("/") + 1 :]
  version = parse_version(child)
  if version is None:
    return None
  return servable_id.ServableId(servable_name, version)


def join_path(base: str, child: str) -> str:
  """Joins with '/', which suits local paths and URIs (gs://, s3://) alike."""
  if not base or base.endswith("/"):
    return base + child
  return base + "/" + child


# The file-system surface, kept importable from here for callers and tests.
FileSystem = file_system.FileSystem
GFileSystem = file_system.GFileSystem
LocalFileSystem = file_system.LocalFileSystem


class _PollError(status.ServingError):
  """A listing failure, and whether its file system wants it logged once.

  Upstream logs a failed listing at every poll; that stays so for the file
  systems upstream serves. Object stores, polled over the network, log each
  distinct failure once (repeats at vlog 1) and their recovery once.
  """

  def __init__(self, message: str, log_once: bool):
    super().__init__(status.Code.INVALID_ARGUMENT, message)
    self.log_once = log_once


def _default_file_systems() -> file_systems.FileSystems:
  return file_systems.FileSystems()


def _policy_choice(servable: ServableToMonitor) -> str:
  # An unset policy means latest{num_versions: 1}, as upstream.
  return servable.servable_version_policy.WhichOneof("policy_choice") or (
      "latest"
  )


def _index_children_by_version(children: Iterable[str]) -> dict[int, str]:
  """Maps version -> child for numeric children; later names win on clashes."""
  by_version: dict[int, str] = {}
  for child in children:
    version = parse_version(child)
    if version is None:
      continue
    if version in by_version:
      logging.warning(
          "Duplicate version directories detected. Version %d will be loaded "
          "from %s, %s will be ignored.",
          version,
          child,
          by_version[version],
      )
    by_version[version] = child
  return by_version


class FileSystemStoragePathSource(source.Source[StoragePath]):
  """Polls configured base paths and aspires the versions each policy picks.

  Polling starts once both a config and the callback are set: every
  `file_system_poll_wait_seconds` when positive, exactly once (on a thread)
  when zero, never when negative (then call `poll_once()` yourself).

  Each base path's file system is picked by its URI scheme (`file_systems`),
  unless one `file_system` is injected for all. Versions of a remote store
  are copied to a local cache before they are aspired, so the aspired path
  is always loadable; a version that cannot be copied is not aspired this
  round and the servable's previous versions stay aspired. Such failures,
  and failed listings of an object store, are logged once per distinct
  message (and their recovery once); other failed listings at every poll,
  as upstream logs them.
  """

  def __init__(
      self,
      config: FileSystemStoragePathSourceConfig | None = None,
      file_system: FileSystem | None = None,
      file_systems: file_systems.FileSystems | None = None,
  ):
    self._fs: FileSystem | None = file_system
    # Owned: stop() closes it (removing the version cache).
    self._file_systems = file_systems or _default_file_systems()
    # Servable name -> {aspired remote-or-local version path: its fs}.
    self._aspired_paths: dict[str, dict[str, FileSystem]] = {}
    # Failure key -> the message last logged for it.
    self._reported: dict[str, str] = {}
    # Bumped by every update_config(), so a poll that listed under an older
    # config is redone instead of emitted.
    self._generation = 0
    # Reentrant so that a callback may call back into update_config().
    self._lock = threading.RLock()
    self._config: FileSystemStoragePathSourceConfig | None = None
    self._callback: source.AspiredVersionsCallback[StoragePath] | None = None
    self._thread: threading.Thread | None = None
    self._stop_event = threading.Event()
    self._stopped = False
    if config is not None:
      self.update_config(config)

  # -- Configuration ---------------------------------------------------------

  def update_config(self, config: FileSystemStoragePathSourceConfig) -> None:
    """Replaces the monitored servables; removed ones are unaspired at once.

    Raises ServingError: INVALID_ARGUMENT when polling already runs and the
    poll period changes (or a base path is missing while versions must be
    present), NOT_FOUND when versions must be present but none exist.
    """
    new_config = FileSystemStoragePathSourceConfig()
    new_config.CopyFrom(config)
    with self._lock:
      if (
          self._thread is not None
          and new_config.file_system_poll_wait_seconds
          != self._config.file_system_poll_wait_seconds
      ):
        raise status.invalid_argument(
            "Changing file_system_poll_wait_seconds is not supported"
        )
      if (
          new_config.fail_if_zero_versions_at_startup
          or new_config.servable_versions_always_present
      ):
        self._fail_if_zero_versions(new_config)
      if self._callback is not None and self._config is not None:
        for name in self._deleted_servables(self._config, new_config):
          self._callback(name, [])
          self._release_unaspired(name, {})
      self._config = new_config
      self._generation += 1
      self._maybe_start_polling()

  def set_aspired_versions_callback(
      self, callback: source.AspiredVersionsCallback[StoragePath]
  ) -> None:
    with self._lock:
      if self._thread is not None:
        logging.error(
            "SetAspiredVersionsCallback() called multiple times; "
            "ignoring this call"
        )
        return
      self._callback = callback
      self._maybe_start_polling()

  @property
  def config(self) -> FileSystemStoragePathSourceConfig | None:
    return self._config

  # -- Polling ---------------------------------------------------------------

  def poll_once(self) -> None:
    """Polls every servable and invokes the callback for each.

    Any file-system error aborts the whole round before any callback runs
    (raised as ServingError), so a transient outage never unloads models.
    Listing and downloading run outside the lock, so a slow store never
    holds up update_config() or stop(); if the config changed meanwhile,
    the round is redone against the new one.
    """
    while True:
      with self._lock:
        if self._callback is None:
          raise status.failed_precondition(
              "poll_once() needs set_aspired_versions_callback() first"
          )
        if self._config is None:
          raise status.failed_precondition("poll_once() needs a config first")
        config = self._config
        generation = self._generation
      updates = self._poll_and_localize(config)
      with self._lock:
        if self._stop_event.is_set() and self._stopped:
          return
        if generation != self._generation:
          continue
        for name, (versions, sources) in updates.items():
          for version in versions:
            logging.vlog(
                1,
                "File-system polling update: Servable:%s; Servable path: %s; "
                "Polling frequency: %d",
                version.id,
                version.data,
                config.file_system_poll_wait_seconds,
            )
          self._callback(name, versions)
          self._release_unaspired(name, sources)
        return

  def _poll_and_localize(
      self, config: FileSystemStoragePathSourceConfig
  ) -> dict[
      str,
      tuple[
          list[servable_data.ServableData[StoragePath]], dict[str, FileSystem]
      ],
  ]:
    """Per servable to update: its loadable versions and their file systems.

    A servable whose versions cannot all be made local is left out (its
    previous aspired set stays), with the failure logged once.
    """
    updates = {}
    for name, versions in self.poll_file_system(config).items():
      if not versions and config.servable_versions_always_present:
        logging.error("Refusing to unload all versions for Servable: %s", name)
        continue
      try:
        updates[name] = self._localize(versions)
      except Exception as e:  # pylint: disable=broad-except
        self._report(
            name,
            f"Not updating the versions of servable {name}: "
            f"{status.from_exception(e).message}",
        )
        continue
      self._recovered(name)
    return updates

  def poll_file_system(
      self, config: FileSystemStoragePathSourceConfig
  ) -> dict[str, list[servable_data.ServableData[StoragePath]]]:
    """What to aspire per servable name, without invoking the callback."""
    result: dict[str, list[servable_data.ServableData[StoragePath]]] = {}
    for servable in config.servables:
      result[servable.servable_name] = self._poll_servable(servable)
    return result

  def stop(self) -> None:
    """Stops polling and joins the poll thread; safe to call repeatedly."""
    # Set before taking the lock, which a poll holds while it downloads.
    self._stop_event.set()
    with self._lock:
      self._stopped = True
      thread = self._thread
    if thread is not None and thread is not threading.current_thread():
      thread.join()
    with self._lock:
      self._file_systems.close()

  # -- Internals -------------------------------------------------------------

  def _maybe_start_polling(self) -> None:
    """Starts the poll thread once config and callback are both present."""
    if (
        self._thread is not None
        or self._stopped
        or self._config is None
        or self._callback is None
    ):
      return
    period = self._config.file_system_poll_wait_seconds
    if period < 0:
      return
    name = (
        "FileSystemStoragePathSource_filesystem_oneshot_thread"
        if period == 0
        else "FileSystemStoragePathSource_filesystem_polling_thread"
    )
    self._thread = threading.Thread(
        target=self._poll_loop, args=(period,), name=name, daemon=True
    )
    self._thread.start()

  def _poll_loop(self, period: int) -> None:
    # Polls before looking at the stop flag, so a one-shot source always polls.
    while True:
      start = time.monotonic()
      try:
        self.poll_once()
        self._recovered("")
      except status.ServingError as e:
        message = (
            "FileSystemStoragePathSource encountered a filesystem access "
            f"error: {e.message}"
        )
        if isinstance(e, _PollError) and not e.log_once:
          logging.error("%s", message)  # Every poll, as upstream.
        else:
          self._report("", message)
      except Exception as e:  # pylint: disable=broad-except
        # A failing callback must not kill polling for good.
        logging.exception("FileSystemStoragePathSource poll failed: %s", e)
      if period == 0 or self._stop_event.wait(
          max(0.0, period - (time.monotonic() - start))
      ):
        return

  def _fs_for(self, path: str) -> FileSystem:
    if self._fs is not None:
      return self._fs
    return self._file_systems.for_path(path)

  def _report(self, key: str, message: str) -> None:
    """Logs a failure once; repeats of the same message go to vlog(1)."""
    if self._reported.get(key) == message:
      logging.vlog(1, "%s", message)
      return
    self._reported[key] = message
    logging.error("%s", message)

  def _recovered(self, key: str) -> None:
    message = self._reported.pop(key, None)
    if message is not None:
      logging.info("Recovered from: %s", message)

  def _localize(
      self, versions: list[servable_data.ServableData[StoragePath]]
  ) -> tuple[
      list[servable_data.ServableData[StoragePath]], dict[str, FileSystem]
  ]:
    """Versions with loadable (local) paths, and each one's file system."""
    out = []
    sources: dict[str, FileSystem] = {}
    for version in versions:
      fs = self._fs_for(version.data)
      local = fs.local_path(version.data, self._stop_event)
      sources[version.data] = fs
      out.append(servable_data.ServableData.of(version.id, local))
    return out, sources

  def _release_unaspired(
      self, name: str, aspired: dict[str, FileSystem]
  ) -> None:
    """Lets file systems drop copies of versions no longer aspired."""
    previous = self._aspired_paths.get(name, {})
    for path, fs in previous.items():
      if path not in aspired:
        try:
          fs.release(path)
        except Exception as e:  # pylint: disable=broad-except
          logging.warning("Could not release %s: %s", path, e)
    if aspired:
      self._aspired_paths[name] = dict(aspired)
    else:
      self._aspired_paths.pop(name, None)

  def _list_children(self, servable: ServableToMonitor) -> list[str]:
    """Version candidates under the base path, sorted and de-duplicated."""
    base = servable.base_path
    fs = self._fs_for(base)
    try:
      children = fs.version_children(base)
    except FileNotFoundError as e:
      raise _PollError(
          f"Could not find base path {base} for servable "
          f"{servable.servable_name} with error {e}",
          fs.log_errors_once,
      ) from e
    except Exception as e:  # pylint: disable=broad-except
      raise _PollError(
          f"Could not list base path {base} for servable "
          f"{servable.servable_name} with error {e}",
          fs.log_errors_once,
      ) from e
    # Object stores may list all descendants: keep the first component.
    return sorted({child.split("/", 1)[0] for child in children} - {""})

  def _specific_fast_path(
      self, servable: ServableToMonitor, wanted: list[int]
  ) -> list[servable_data.ServableData[StoragePath]] | None:
    """Checks `<base>/<v>` directly; None when any needs a directory listing."""
    found = []
    fs = self._fs_for(servable.base_path)
    for version in sorted(set(wanted)):
      path = join_path(servable.base_path, str(version))
      try:
        if not fs.exists(path):
          return None
      except Exception:  # pylint: disable=broad-except
        return None
      found.append(
          servable_data.ServableData.of(
              servable_id.ServableId(servable.servable_name, version), path
          )
      )
    return found

  def _poll_servable(
      self, servable: ServableToMonitor
  ) -> list[servable_data.ServableData[StoragePath]]:
    name = servable.servable_name
    policy = servable.servable_version_policy
    choice = _policy_choice(servable)

    def aspire(
        version: int, child: str
    ) -> servable_data.ServableData[StoragePath]:
      return servable_data.ServableData.of(
          servable_id.ServableId(name, version),
          join_path(servable.base_path, child),
      )

    versions: list[servable_data.ServableData[StoragePath]] = []
    if choice == "specific":
      wanted = list(policy.specific.versions)
      if not wanted:
        logging.warning("No specific versions requested for servable %s.", name)
      else:
        # The base path must still exist so an outage aborts the round.
        fast = None
        fs = self._fs_for(servable.base_path)
        try:
          if fs.cheap_exists and fs.exists(servable.base_path):
            fast = self._specific_fast_path(servable, wanted)
        except Exception:  # pylint: disable=broad-except
          fast = None
        if fast is not None:
          return fast
      by_version = _index_children_by_version(self._list_children(servable))
      for version in sorted(by_version):
        if version in wanted:
          versions.append(aspire(version, by_version[version]))
      aspired = {v.id.version for v in versions}
      for version in dict.fromkeys(wanted):
        if version not in aspired:
          logging.warning(
              "Version %d of servable %s, which was requested to be served as "
              "a 'specific' version in the servable's version policy, was not "
              "found in the file system",
              version,
              name,
          )
    else:
      by_version = _index_children_by_version(self._list_children(servable))
      if choice == "all":
        for version in sorted(by_version):
          versions.append(aspire(version, by_version[version]))
      else:
        num_versions = max(policy.latest.num_versions, 1)
        for version in sorted(by_version, reverse=True)[:num_versions]:
          versions.append(aspire(version, by_version[version]))

    if not versions:
      logging.warning(
          "No versions of servable %s found under base path %s. Did you "
          "forget to name your leaf directory as a number (eg. '/1/')?",
          name,
          servable.base_path,
      )
    return versions

  def _fail_if_zero_versions(
      self, config: FileSystemStoragePathSourceConfig
  ) -> None:
    versions_by_name = self.poll_file_system(config)
    base_paths = {s.servable_name: s.base_path for s in config.servables}
    for name, versions in versions_by_name.items():
      if not versions:
        raise status.not_found(
            f"Unable to find a numerical version path for servable {name} "
            f"at: {base_paths[name]}"
        )

  @staticmethod
  def _deleted_servables(
      old: FileSystemStoragePathSourceConfig,
      new: FileSystemStoragePathSourceConfig,
  ) -> list[str]:
    kept = {s.servable_name for s in new.servables}
    return sorted({s.servable_name for s in old.servables} - kept)
