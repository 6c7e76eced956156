"""Tests gil_held_numpy: astype's and max's results, with the GIL kept."""

from __future__ import annotations

import sys
import threading
import time

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from tensorflow_serving.util import gil_held_numpy


class ResultsTest(parameterized.TestCase):

  @parameterized.parameters(0, 1, 500, 501, 784, 1000, 5000)
  def test_astype_is_astypes(self, size):
    values = np.random.RandomState(size).randn(size) * 1e39
    values[::7] = np.round(values[::7] / 1e30)  # some integers, some inf
    for dtype in (np.float32, np.float16, np.float64, np.int64):
      with self.subTest(dtype=dtype):
        with np.errstate(all="ignore"):
          want = values.astype(dtype)
          got = gil_held_numpy.astype(values, dtype)
        self.assertEqual(got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)

  def test_astype_keeps_the_shape_and_copies(self):
    values = np.arange(2 * 784, dtype=np.float64).reshape(2, 784)
    got = gil_held_numpy.astype(values, np.float32)
    self.assertEqual(got.shape, (2, 784))
    self.assertTrue(got.flags.c_contiguous)
    np.testing.assert_array_equal(got, values.astype(np.float32))
    same = gil_held_numpy.astype(values, np.float64)
    self.assertIsNot(same, values)  # astype copies; so does this
    strided = values[:, ::2]  # not contiguous: one numpy call
    np.testing.assert_array_equal(
        gil_held_numpy.astype(strided, np.float32), strided.astype(np.float32)
    )

  @parameterized.parameters(1, 500, 784, 5000)
  def test_abs_all_at_most(self, size):
    values = np.linspace(-3, 2, size)
    self.assertTrue(gil_held_numpy.abs_all_at_most(values, 3))
    self.assertFalse(gil_held_numpy.abs_all_at_most(values, 2.5))
    values[-1] = np.nan
    self.assertFalse(gil_held_numpy.abs_all_at_most(values, 1e300))
    self.assertTrue(gil_held_numpy.abs_all_at_most(np.zeros(0), 0))


class GilTest(absltest.TestCase):

  def test_an_mnist_image_keeps_the_gil(self):
    # With a 1 s switch interval the other thread runs only when this one
    # lets go of the GIL (numpy does, for loops over 500 elements).
    values = np.random.RandomState(0).rand(784)
    count = [0]
    stop = threading.Event()

    def spin():
      while not stop.is_set():
        count[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    spinner = threading.Thread(target=spin)
    try:
      spinner.start()
      time.sleep(0.01)  # Lets it start; it hands the GIL back within 1 s.
      before = count[0]
      for _ in range(50):
        gil_held_numpy.astype(values, np.float32)
        gil_held_numpy.abs_all_at_most(values, 1.0)
      during = count[0] - before
    finally:
      stop.set()
      spinner.join()
      sys.setswitchinterval(interval)
    self.assertEqual(during, 0)


if __name__ == "__main__":
  absltest.main()
