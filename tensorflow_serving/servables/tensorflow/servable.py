"""The servable contract: what the request pipeline may ask of a loaded model.

Upstream names this `Servable` (servables/tensorflow/servable.h). Here the
SavedModel bundle, the TF Lite bundle and the batching wrapper around either
satisfy it structurally; mypy checks that in CI (tools/lint.sh), so a bundle
that drifts from the contract fails the build rather than a request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import concurrent.futures
from typing import Protocol

import numpy as np

from tensorflow_serving.servables.tensorflow import signature as signature_lib

Outputs = dict[str, np.ndarray]


class Servable(Protocol):
  """A loaded model version: its signatures, and ways to run them."""

  @property
  def signatures(self) -> Mapping[str, signature_lib.Signature]:
    """Servable signatures by key (the TF2 init-op pseudo-signature left out)."""
    ...

  @property
  def export_dir(self) -> str:
    """The version directory the servable was loaded from."""
    ...

  @property
  def runtime(self) -> str:
    """The `runtime` label of upstream's runtime_latency metric."""
    ...

  @property
  def batches(self) -> bool:
    """True when `submit` queues runs on a shared batch scheduler.

    The caller then awaits the future instead of blocking a worker thread.
    """
    ...

  def validate(
      self,
      sig: signature_lib.Signature,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str] = (),
  ) -> tuple[str, ...]:
    """Raises upstream's INVALID_ARGUMENT for a request `run` would refuse.

    Returns the output aliases to fetch, in order.
    """
    ...

  def run(
      self,
      sig: signature_lib.Signature,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str] = (),
  ) -> Outputs:
    """Validates and runs `sig` in the calling thread; outputs by alias."""
    ...

  def close(self) -> None:
    """Releases the runtime (session, interpreters, batch queues)."""
    ...


class BatchingServable(Servable, Protocol):
  """A servable whose runs go through a batch scheduler (`batches` is True)."""

  def submit(
      self,
      sig: signature_lib.Signature,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str] = (),
  ) -> concurrent.futures.Future[Outputs]:
    """Validates now, then enqueues; the future completes with the outputs."""
    ...
