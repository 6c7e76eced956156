"""One GetModelStatus answer from every worker's own.

Each worker runs its own lifecycle over the same base paths, so for a while
(one poll period, plus a load) workers can disagree about a version. The
merged answer keeps upstream's shape (one entry per version, newest first)
and says what a client can rely on whichever worker serves it:

- a version is AVAILABLE only when every worker has it AVAILABLE;
- otherwise it is in the state of the least advanced worker that does not
  have it AVAILABLE (START < LOADING < UNLOADING < END), so a new version
  reads LOADING until the last worker loaded it, and an old one reads
  UNLOADING or END as soon as one worker let it go;
- a worker that has not seen a version yet counts as START for it while
  others load or serve it (it will), and not at all once others unloaded it;
- a version that failed in any worker reports that worker's error.

A model no worker knows gets the first worker's error, as one server gives.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
import dataclasses

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.util import status

ModelVersionStatus = get_model_status_pb2.ModelVersionStatus
State = ModelVersionStatus.State
# Not yet AVAILABLE, or AVAILABLE: a worker missing such a version will load it.
_ON_THE_WAY_UP = (State.START, State.LOADING, State.AVAILABLE)


@dataclasses.dataclass(frozen=True)
class Reply:
  """One worker's answer: OK with a serialized response, or an error."""

  code: int
  message: str = ""
  payload: bytes = b""


def merge(
    replies: Sequence[Reply],
) -> get_model_status_pb2.GetModelStatusResponse:
  """The answer for all workers; raises the first error if none knows it."""
  responses = []
  for reply in replies:
    if reply.code == status.Code.OK:
      responses.append(
          get_model_status_pb2.GetModelStatusResponse.FromString(reply.payload)
      )
  if not responses:
    if not replies:
      raise status.unavailable("No model server worker answered.")
    first = replies[0]
    raise status.ServingError(status.Code(first.code), first.message)
  # Workers that answered NOT_FOUND know none of the versions.
  workers = len(replies)
  by_version: dict[int, list[ModelVersionStatus]] = collections.defaultdict(
      list
  )
  for response in responses:
    for entry in response.model_version_status:
      by_version[entry.version].append(entry)
  merged = get_model_status_pb2.GetModelStatusResponse()
  for version in sorted(by_version, reverse=True):
    merged.model_version_status.add().CopyFrom(
        _merge_version(by_version[version], workers)
    )
  return merged


def _merge_version(
    entries: Sequence[ModelVersionStatus], workers: int
) -> ModelVersionStatus:
  for entry in entries:
    if entry.status.error_code != status.Code.OK:
      return entry
  states = [entry.state for entry in entries]
  if len(entries) < workers and any(s in _ON_THE_WAY_UP for s in states):
    missing = ModelVersionStatus()
    missing.CopyFrom(entries[0])
    missing.state = State.START
    entries = [*entries, missing]
    states.append(State.START)
  if all(s == states[0] for s in states):
    return min(entries, key=lambda e: not e.status.error_message)
  behind = [e for e in entries if e.state != State.AVAILABLE]
  # Among the least advanced, one whose load failed and is being retried
  # (its message says why).
  return min(behind, key=lambda e: (e.state, not e.status.error_message))
