"""Small synthetic MNIST files, so example tests need no real data."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from tensorflow_serving.example import mnist_input_data
from tools.mnist import make_mnist_idx

_BAND_TOP = 4  # Digit k lights rows 4 + 2k and 5 + 2k.


def synthetic_digits(num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Noisy images whose bright band of rows encodes the label."""
  rng = np.random.RandomState(seed)
  labels = rng.randint(0, 10, size=num).astype(np.uint8)
  images = rng.randint(0, 60, size=(num, 28, 28)).astype(np.uint8)
  for image, label in zip(images, labels):
    top = _BAND_TOP + 2 * int(label)
    image[top : top + 2, 4:24] = 255
  return images, labels


def decode_label(image: np.ndarray) -> int:
  """Reads the label back from a (flattened or 28x28) synthetic image."""
  rows = np.asarray(image).reshape(28, 28).sum(axis=1)
  bands = [
      rows[_BAND_TOP + 2 * k : _BAND_TOP + 2 * k + 2].sum() for k in range(10)
  ]
  return int(np.argmax(bands))


def write_synthetic_mnist(
    data_dir: str | os.PathLike[str], num_train: int = 400, num_test: int = 100
) -> tuple[np.ndarray, np.ndarray]:
  """Writes the four IDX files; returns the test images and labels."""
  data_dir = pathlib.Path(data_dir)
  data_dir.mkdir(parents=True, exist_ok=True)
  train = synthetic_digits(num_train, seed=1)
  test = synthetic_digits(num_test, seed=2)
  for name, array in zip(mnist_input_data.FILES, (*train, *test)):
    make_mnist_idx.write_idx_gz(data_dir / name, array)
  return test
