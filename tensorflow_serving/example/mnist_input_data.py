"""Reads MNIST from the four standard IDX .gz files, never downloading them.

Same interface as upstream's tutorial module: `read_data_sets(work_dir)`
returns `DataSets(train, validation, test)`, each a `DataSet` with
`next_batch(batch_size)`; images are float32 in [0, 1] flattened to 784 values,
labels are uint8 digits or float32 one-hot rows.

Where the files come from, first match wins:
  1. `work_dir`, if it holds all four files (e.g. the official ones);
  2. `$TF_SERVING_MNIST_DIR` if set, else `<repo>/.data/mnist`, the offline copy
     made by `tools/setup.sh` or `tools/mnist/make_mnist_idx.py`.
The repo is found from this file's real path, so Bazel's runfiles symlinks lead
back to the source tree.

The offline copy has 8,000 training and 2,000 test digits, so by default no
training digits are held out for validation (upstream holds out 5,000 of its
60,000); pass `validation_size` to carve some off.
"""

from __future__ import annotations

import gzip
import os
import pathlib
from typing import NamedTuple

import numpy as np

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions.
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension.
NUM_CLASSES = 10
DATA_DIR_ENV = "TF_SERVING_MNIST_DIR"

# tensorflow_serving/example/<this file> -> the repository root.
_REPO_ROOT = pathlib.Path(os.path.realpath(__file__)).parents[2]


class DataSet:
  """Examples served in (optionally shuffled) epochs of mini-batches."""

  def __init__(
      self, images: np.ndarray, labels: np.ndarray, seed: int | None = 0
  ):
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels")
    self._images = images
    self._labels = labels
    # A private generator keeps batch order reproducible for a given seed.
    self._rng = np.random.RandomState(seed)
    self._order: np.ndarray | None = None
    self._position = 0
    self._epochs_completed = 0

  @property
  def images(self) -> np.ndarray:
    return self._images

  @property
  def labels(self) -> np.ndarray:
    return self._labels

  @property
  def num_examples(self) -> int:
    return len(self._images)

  @property
  def epochs_completed(self) -> int:
    return self._epochs_completed

  def next_batch(
      self, batch_size: int, shuffle: bool = True
  ) -> tuple[np.ndarray, np.ndarray]:
    """Returns the next `batch_size` examples, continuing into a new epoch.

    `shuffle` picks the order of each epoch when it starts.
    """
    if self.num_examples == 0:
      raise ValueError("next_batch() on an empty DataSet")
    chunks = []
    remaining = batch_size
    while remaining > 0:
      if self._order is None or self._position == self.num_examples:
        if self._order is not None:
          self._epochs_completed += 1
        self._order = (
            self._rng.permutation(self.num_examples)
            if shuffle
            else np.arange(self.num_examples)
        )
        self._position = 0
      take = min(remaining, self.num_examples - self._position)
      chunks.append(self._order[self._position : self._position + take])
      self._position += take
      remaining -= take
    batch = np.concatenate(chunks)
    return self._images[batch], self._labels[batch]


class DataSets(NamedTuple):
  train: DataSet
  validation: DataSet
  test: DataSet


def _read_idx(path: pathlib.Path, magic: int) -> np.ndarray:
  """Decodes one gzipped IDX file of unsigned bytes, checking its header."""
  with gzip.open(path, "rb") as f:
    data = f.read()
  if len(data) < 4:
    raise ValueError(f"{path}: too short to be an IDX file")
  found = int.from_bytes(data[:4], "big")
  if found != magic:
    raise ValueError(
        f"Invalid magic number {found} in MNIST file {path} "
        f"(expected {magic}); is it the right IDX file?"
    )
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  shape = tuple(
      int(d)
      for d in np.frombuffer(
          data[:header].ljust(header, b"\0"), dtype=">u4", offset=4
      )
  )
  if len(data) != header + int(np.prod(shape)):
    raise ValueError(
        f"{path}: size {len(data)} does not match the IDX "
        f"header's dimensions {list(shape)}"
    )
  return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def extract_images(path: str | os.PathLike[str]) -> np.ndarray:
  """Images as uint8 [N, rows, cols]."""
  return _read_idx(pathlib.Path(path), IMAGES_MAGIC)


def extract_labels(path: str | os.PathLike[str]) -> np.ndarray:
  """Labels as uint8 [N]."""
  return _read_idx(pathlib.Path(path), LABELS_MAGIC)


def dense_to_one_hot(
    labels: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
  return np.eye(num_classes, dtype=np.float32)[labels]


def offline_data_dir() -> pathlib.Path:
  """The offline copy: `$TF_SERVING_MNIST_DIR`, else `<repo>/.data/mnist`."""
  override = os.environ.get(DATA_DIR_ENV)
  return pathlib.Path(override) if override else _REPO_ROOT / ".data" / "mnist"


def find_data_dir(work_dir: str | os.PathLike[str]) -> pathlib.Path:
  """First of work_dir and the offline copy that holds all four files."""
  candidates = [pathlib.Path(work_dir), offline_data_dir()]
  for candidate in candidates:
    if all((candidate / name).is_file() for name in FILES):
      return candidate
  searched = "\n".join(f"  {c}" for c in candidates)
  raise FileNotFoundError(
      f"MNIST data not found: no directory holds all of {', '.join(FILES)}. "
      f"Searched:\n{searched}\n"
      "This example never downloads. Create the offline copy with "
      "`tools/setup.sh`, or with\n"
      f"  python tools/mnist/make_mnist_idx.py --out_dir {offline_data_dir()}\n"
      f"(or point --work_dir or ${DATA_DIR_ENV} at a directory with the "
      "four files)."
  )


def read_data_sets(
    train_dir: str | os.PathLike[str],
    one_hot: bool = False,
    validation_size: int = 0,
    seed: int | None = 0,
) -> DataSets:
  """Loads train/validation/test from `train_dir` or the offline copy.

  The first `validation_size` training examples become the validation set.
  """
  data_dir = find_data_dir(train_dir)

  def load(images_file: str, labels_file: str) -> tuple[np.ndarray, np.ndarray]:
    images = extract_images(data_dir / images_file)
    labels = extract_labels(data_dir / labels_file)
    if len(images) != len(labels):
      raise ValueError(
          f"{data_dir}: {images_file} has {len(images)} images "
          f"but {labels_file} has {len(labels)} labels"
      )
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return flat, (dense_to_one_hot(labels) if one_hot else labels)

  train_images, train_labels = load(TRAIN_IMAGES, TRAIN_LABELS)
  test_images, test_labels = load(TEST_IMAGES, TEST_LABELS)
  if not 0 <= validation_size <= len(train_images):
    raise ValueError(
        f"validation_size should be between 0 and "
        f"{len(train_images)}, got {validation_size}"
    )
  return DataSets(
      train=DataSet(
          train_images[validation_size:],
          train_labels[validation_size:],
          seed=seed,
      ),
      validation=DataSet(
          train_images[:validation_size],
          train_labels[:validation_size],
          seed=seed,
      ),
      test=DataSet(test_images, test_labels, seed=seed),
  )
