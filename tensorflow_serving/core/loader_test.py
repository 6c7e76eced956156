"""Tests for the Loader defaults and SimpleLoader."""

import unittest

from tensorflow_serving.core.loader import Loader
from tensorflow_serving.core.loader import SimpleLoader
from tensorflow_serving.resources.resources import ResourceAllocation


class LoaderTest(unittest.TestCase):

  def test_default_estimate_is_empty(self):
    class Minimal(Loader):

      def load(self):
        pass

      def unload(self):
        pass

      def servable(self):
        return None

    self.assertEqual(Minimal().estimate_resources(), ResourceAllocation())

  def test_loader_is_abstract(self):
    with self.assertRaises(TypeError):
      Loader()  # pylint: disable=abstract-class-instantiated

  def test_simple_loader(self):
    torn_down = []
    estimate = ResourceAllocation(ram_bytes=5)
    loader = SimpleLoader(lambda: {"model": 1}, estimate, torn_down.append)
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

    loader = SimpleLoader(fail)
    with self.assertRaises(OSError):
      loader.load()
    self.assertEqual(loader.estimate_resources(), ResourceAllocation())
    loader.unload()  # Without an unloader, unload just drops the servable.


if __name__ == "__main__":
  unittest.main()
