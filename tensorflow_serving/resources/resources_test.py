"""Tests for ResourceAllocation arithmetic."""

import unittest

from tensorflow_serving.resources import resources


class ResourceAllocationTest(unittest.TestCase):

  def test_mapping_and_defaults(self):
    a = resources.ResourceAllocation({resources.RAM_BYTES: 10}, gpu=2)
    self.assertEqual(dict(a), {resources.RAM_BYTES: 10, "gpu": 2})
    self.assertEqual(a.quantity("absent"), 0)
    self.assertFalse(a.is_empty)
    self.assertTrue(resources.ResourceAllocation().is_empty)
    self.assertTrue(resources.ResourceAllocation(ram_bytes=0).is_empty)

  def test_add_and_subtract(self):
    a = resources.ResourceAllocation(ram_bytes=10)
    b = resources.ResourceAllocation(ram_bytes=3, gpu=1)
    self.assertEqual(a + b, resources.ResourceAllocation(ram_bytes=13, gpu=1))
    self.assertEqual(
        (a + b) - b, resources.ResourceAllocation(ram_bytes=10, gpu=0)
    )
    with self.assertRaises(ValueError):
      a.subtract(b)

  def test_fits_within(self):
    budget = resources.ResourceAllocation(ram_bytes=10)
    self.assertTrue(
        resources.ResourceAllocation(ram_bytes=10).fits_within(budget)
    )
    self.assertFalse(
        resources.ResourceAllocation(ram_bytes=11).fits_within(budget)
    )
    self.assertFalse(resources.ResourceAllocation(gpu=1).fits_within(budget))
    self.assertTrue(resources.ResourceAllocation().fits_within(budget))

  def test_rejects_bad_quantities(self):
    for bad in (-1, 1.5, True, "3"):
      with self.assertRaises(ValueError):
        resources.ResourceAllocation(ram_bytes=bad)

  def test_hashable_and_immutable(self):
    a = resources.ResourceAllocation(ram_bytes=1)
    self.assertEqual(
        hash(a), hash(resources.ResourceAllocation({resources.RAM_BYTES: 1}))
    )
    with self.assertRaises(TypeError):
      a[resources.RAM_BYTES] = 2


if __name__ == "__main__":
  unittest.main()
