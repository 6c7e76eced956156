"""Tests for the Loader defaults and SimpleLoader."""

import unittest

from tensorflow_serving.core import loader as loader_lib
from tensorflow_serving.resources import resources


class LoaderTest(unittest.TestCase):

  def test_default_estimate_is_empty(self):
    class Minimal(loader_lib.Loader):

      def load(self):
        pass

      def unload(self):
        pass

      def servable(self):
        return None

    self.assertEqual(
        Minimal().estimate_resources(), resources.ResourceAllocation()
    )

  def test_loader_is_abstract(self):
    with self.assertRaises(TypeError):
      loader_lib.Loader()  # pylint: disable=abstract-class-instantiated

  def test_simple_loader(self):
    torn_down = []
    estimate = resources.ResourceAllocation(ram_bytes=5)
    loader = loader_lib.SimpleLoader(
        lambda: {"model": 1}, estimate, torn_down.append
    )
    self.assertEqual(loader.estimate_resources(), estimate)
    self.assertIsNone(loader.servable())
    loader.load()
    self.assertEqual(loader.servable(), {"model": 1})
    loader.unload()
    self.assertIsNone(loader.servable())
    self.assertEqual(torn_down, [{"model": 1}])

  def test_simple_loader_creator_errors_propagate(self):
    def fail():
      raise OSError("missing")

    loader = loader_lib.SimpleLoader(fail)
    with self.assertRaises(OSError):
      loader.load()
    self.assertEqual(
        loader.estimate_resources(), resources.ResourceAllocation()
    )
    loader.unload()  # Without an unloader, unload just drops the servable.


if __name__ == "__main__":
  unittest.main()
