"""The per-version state machine the manager drives a Loader through."""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import enum
import threading
from typing import Any

from absl import logging

from tensorflow_serving.core import loader as loader_lib
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.util import status


class LoaderHarness:
  """Owns one Loader and the legal order of operations on it.

  Happy path: NEW -> LOAD_REQUESTED -> LOAD_APPROVED -> LOADING -> READY ->
  UNLOAD_REQUESTED -> QUIESCING -> QUIESCED -> UNLOADING -> DISABLED; `error()`
  moves any state to ERROR. Each step checks the state it starts from, so two
  racing callers cannot both load or both unload: the loser gets
  FAILED_PRECONDITION and the state is left unchanged.

  `on_transition(harness, new_state)` runs under the harness lock right after
  every state change. The manager shares its own lock with the harness and
  uses the hook to update its serving map and queue lifecycle events in the
  same critical section as the change, so nobody can observe a state whose
  event is not yet queued. The hook must be quick and must not block.
  """

  class State(enum.Enum):
    NEW = "new"
    LOAD_REQUESTED = "load-requested"
    LOAD_APPROVED = "load-approved"
    LOADING = "loading"
    READY = "ready"
    UNLOAD_REQUESTED = "unload-requested"
    QUIESCING = "quiescing"
    QUIESCED = "quiesced"
    UNLOADING = "unloading"
    DISABLED = "disabled"
    ERROR = "error"

  def __init__(
      self,
      servable_id: servable_id_lib.ServableId,
      loader: loader_lib.Loader | None,
      *,
      max_num_load_retries: int = 0,
      load_retry_interval_s: float = 0.0,
      lock: threading.RLock | None = None,
      on_transition: (
          Callable[[LoaderHarness, LoaderHarness.State], None] | None
      ) = None,
      on_load_retry: (
          Callable[[LoaderHarness, status.ServingError, int], None] | None
      ) = None,
  ):
    self._id = servable_id
    self._loader = loader
    self._max_num_load_retries = max(0, max_num_load_retries)
    self._load_retry_interval_s = load_retry_interval_s
    self._lock = lock if lock is not None else threading.RLock()
    self._on_transition = on_transition
    # Told (without the lock) of each failed attempt that will be retried,
    # with the number of attempts so far: the version stays LOADING, and
    # this is how its last error becomes visible meanwhile.
    self._on_load_retry = on_load_retry
    self._state = LoaderHarness.State.NEW
    self._status: status.ServingError | None = None
    # An Event rather than a flag so a retry back-off wakes up immediately.
    self._cancel_load_retries = threading.Event()

  @property
  def id(self) -> servable_id_lib.ServableId:
    return self._id

  @property
  def loader(self) -> loader_lib.Loader | None:
    return self._loader

  @property
  def state(self) -> LoaderHarness.State:
    with self._lock:
      return self._state

  @property
  def status(self) -> status.ServingError | None:
    """The error that moved the harness to ERROR; None while healthy."""
    with self._lock:
      return self._status

  @property
  def max_num_load_retries(self) -> int:
    return self._max_num_load_retries

  @property
  def load_retry_interval_s(self) -> float:
    return self._load_retry_interval_s

  @property
  def load_retries_cancelled(self) -> bool:
    return self._cancel_load_retries.is_set()

  def cancel_load_retries(self) -> None:
    """Stops `load()` from trying again, e.g. when the version is un-aspired.

    An attempt already running finishes; if it fails there is no retry. Safe
    to call from any thread without the harness lock.
    """
    self._cancel_load_retries.set()

  # --- Transitions ------------------------------------------------------------

  def load_requested(self) -> None:
    self._transition(
        self.State.NEW, self.State.LOAD_REQUESTED, "request load of"
    )

  def load_approved(self) -> None:
    self._transition(
        self.State.LOAD_REQUESTED, self.State.LOAD_APPROVED, "approve load of"
    )
    logging.info("Approving load for servable version %s", self._id)

  def load(self) -> None:
    """Runs the loader, retrying failures; READY on success, else ERROR.

    Makes up to 1 + max_num_load_retries attempts, `load_retry_interval_s`
    apart (a negative interval means no wait), stopping early once retries
    are cancelled. Raises the last load error (already recorded in `status`).
    """
    self._transition(self.State.LOAD_APPROVED, self.State.LOADING, "load")
    logging.info("Loading servable version %s", self._id)
    error = self._load_with_retries()
    with self._lock:
      if error is None:
        self._set_state(self.State.READY)
      else:
        self._set_error(error)
    if error is not None:
      raise error
    logging.info("Successfully loaded servable version %s", self._id)

  def unload_requested(self) -> None:
    self._transition(
        self.State.READY, self.State.UNLOAD_REQUESTED, "request unload of"
    )

  def start_quiescing(self) -> None:
    self._transition(
        self.State.UNLOAD_REQUESTED, self.State.QUIESCING, "quiesce"
    )
    logging.info("Quiescing servable version %s", self._id)

  def done_quiescing(self) -> None:
    self._transition(
        self.State.QUIESCING, self.State.QUIESCED, "finish quiescing"
    )
    logging.info("Done quiescing servable version %s", self._id)

  def unload(self) -> None:
    """Runs the loader's unload and ends in DISABLED.

    An exception from the loader is logged, not raised: the version is gone
    from serving either way, and DISABLED lets the manager forget it.
    """
    self._transition(self.State.QUIESCED, self.State.UNLOADING, "unload")
    logging.info("Unloading servable version %s", self._id)
    try:
      self._loader.unload()
    except Exception:  # pylint: disable=broad-except
      logging.exception("Unloading servable %s failed", self._id)
    with self._lock:
      self._set_state(self.State.DISABLED)
    logging.info("Done unloading servable version %s", self._id)

  def error(self, error: status.ServingError) -> None:
    """Moves to ERROR from any state, recording `error`.

    The first error wins: a harness already in ERROR keeps its original cause,
    which is the one worth reporting.
    """
    with self._lock:
      if self._state is not self.State.ERROR:
        self._set_error(error)

  # --- Internals --------------------------------------------------------------

  def _load_with_retries(self) -> status.ServingError | None:
    error: status.ServingError | None = None
    for attempt in range(self._max_num_load_retries + 1):
      if self._cancel_load_retries.is_set():
        logging.info("Load of servable %s cancelled", self._id)
        if attempt == 0:
          return status.cancelled("Load cancelled before we could try to load.")
        return error
      if attempt > 0:
        if self._load_retry_interval_s > 0:
          self._cancel_load_retries.wait(self._load_retry_interval_s)
          if self._cancel_load_retries.is_set():
            logging.info("Retrying load of servable %s was cancelled", self._id)
            return error
        logging.info(
            "Retrying load of servable %s: retry %d", self._id, attempt
        )
      try:
        self._loader.load()
        return None
      except Exception as e:  # pylint: disable=broad-except
        error = status.from_exception(e)
        logging.error("Servable %s load failure: %s", self._id, error)
        if (
            self._on_load_retry is not None
            and attempt < self._max_num_load_retries
            and not self._cancel_load_retries.is_set()
        ):
          self._on_load_retry(self, error, attempt + 1)
    logging.info(
        "Load of servable %s failed after %d retries",
        self._id,
        self._max_num_load_retries,
    )
    return error

  def _transition(self, expected: State, new: State, action: str) -> None:
    with self._lock:
      if self._state is not expected:
        raise status.failed_precondition(
            f"Illegal request to {action} servable {self._id}: it is in state "
            f"{self._state.value}, expected {expected.value}"
        )
      self._set_state(new)

  def _set_error(self, error: status.ServingError) -> None:
    self._status = error
    logging.info(
        "Encountered an error for servable version %s: %s", self._id, error
    )
    self._set_state(self.State.ERROR)

  def _set_state(self, new: State) -> None:
    self._state = new
    if self._on_transition is not None:
      try:
        self._on_transition(self, new)
      except Exception:  # pylint: disable=broad-except
        logging.exception(
            "on_transition hook failed for %s -> %s", self._id, new.value
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ServableStateSnapshot:
  """A consistent view of one managed version, for policies and callers.

  `additional_state` is whatever the manager's user attached when it started
  managing the version (the aspired-versions manager keeps its aspired flag
  there, so flag and harness state are read together).
  """

  id: servable_id_lib.ServableId
  state: LoaderHarness.State
  additional_state: Any = None
