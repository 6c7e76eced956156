"""Every worker's metrics in one scrape, rendered as one server renders them.

Workers record into prometheus_client's multiprocess files (the supervisor
sets PROMETHEUS_MULTIPROC_DIR for them; one file per process and metric
type). `MergedCollector` reads them all with prometheus_client's own
MultiProcessCollector (counters and histograms summed, gauges by their
multiprocess mode) and lays the sums out as this process's registry would:
the same families, in the same order, with the same help text, so that
util/metrics.exposition() renders upstream's names, counter types and bucket
bounds exactly as for a single process.

A dead worker's counts must stay in the sums, but one set of files per
process ever started would grow without bound under a crash loop:
`retire_process` folds a dead worker's counters and histograms into one
archive file. Readers and the fold take a file lock, so no scrape ever sees
the counts twice or not at all (either would look like a counter reset).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
import fcntl
import glob
import math
import os

import prometheus_client
from prometheus_client import metrics_core
from prometheus_client import mmap_dict
from prometheus_client import multiprocess

_LOCK_NAME = ".lock"
# Files of dead workers, folded: `<type>_retired.db`.
_RETIRED = "retired"
# Types whose values add up across processes (gauges do not: see their mode).
_ADDITIVE = ("counter", "histogram", "summary")
_HISTOGRAM_ORDER = {"_bucket": 0, "_count": 1, "_sum": 2}


@contextlib.contextmanager
def _locked(path: str, exclusive: bool) -> Iterator[None]:
  with open(os.path.join(path, _LOCK_NAME), "a+b") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _key(name: str, labels: dict[str, str]) -> tuple:
  return name, tuple(sorted(labels.items()))


class MergedCollector:
  """Collects every process's values in the layout of `registry()`'s."""

  def __init__(
      self,
      path: str,
      registry: Callable[[], prometheus_client.CollectorRegistry],
  ):
    self._path = path
    self._registry = registry

  def _merged(self) -> dict[str, metrics_core.Metric]:
    with _locked(self._path, exclusive=False):
      files = glob.glob(os.path.join(self._path, "*.db"))
      return {
          m.name: m
          for m in multiprocess.MultiProcessCollector.merge(files, True)
      }

  def collect(self) -> Iterator[metrics_core.Metric]:
    merged = self._merged()
    for local in self._registry().collect():
      family = metrics_core.Metric(
          local.name, local.documentation, local.type, local.unit
      )
      values = {}
      if local.name in merged:
        values = {_key(s.name, s.labels): s for s in merged[local.name].samples}
      # This process's series first, in its own order; then the series only
      # other workers have, grouped as a registry groups them.
      for sample in local.samples:
        found = values.pop(_key(sample.name, sample.labels), None)
        if found is not None:
          family.add_sample(found.name, found.labels, found.value)
      for sample in sorted(values.values(), key=_sample_order):
        family.add_sample(sample.name, sample.labels, sample.value)
      yield family


def _sample_order(sample) -> tuple:
  labels = {k: v for k, v in sample.labels.items() if k != "le"}
  suffix = next((s for s in _HISTOGRAM_ORDER if sample.name.endswith(s)), "")
  bound = float(sample.labels.get("le", "nan"))
  return (
      sorted(labels.items()),
      _HISTOGRAM_ORDER.get(suffix, -1),
      math.inf if math.isnan(bound) else bound,
  )


def retire_process(path: str, pid: int) -> None:
  """Folds a dead worker's files into the archive; drops its live gauges."""
  with _locked(path, exclusive=True):
    for typ in _ADDITIVE:
      dead = os.path.join(path, f"{typ}_{pid}.db")
      if not os.path.exists(dead):
        continue
      archive = mmap_dict.MmapedDict(os.path.join(path, f"{typ}_{_RETIRED}.db"))
      try:
        for (
            key,
            value,
            timestamp,
            _,
        ) in mmap_dict.MmapedDict.read_all_values_from_file(dead):
          old, _ = archive.read_value(key)
          archive.write_value(key, old + value, timestamp)
      finally:
        archive.close()
      os.remove(dead)
    multiprocess.mark_process_dead(pid, path)
