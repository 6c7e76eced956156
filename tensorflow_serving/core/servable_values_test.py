"""Tests for the small value types: ids, requests, data and states."""

import unittest

from tensorflow_serving.core.servable_data import ServableData
from tensorflow_serving.core.servable_id import ServableId
from tensorflow_serving.core.servable_request import AutoVersionPolicy
from tensorflow_serving.core.servable_request import ServableRequest
from tensorflow_serving.core.servable_state import ManagerState
from tensorflow_serving.core.servable_state import ServableState
from tensorflow_serving.util import status


class ServableIdTest(unittest.TestCase):

  def test_str_is_upstream_debug_string(self):
    self.assertEqual(str(ServableId("m", 1)), "{name: m version: 1}")

  def test_ordering_and_hashing(self):
    ids = [ServableId("b", 1), ServableId("a", 2), ServableId("a", 1)]
    self.assertEqual(
        sorted(ids),
        [ServableId("a", 1), ServableId("a", 2), ServableId("b", 1)],
    )
    self.assertEqual(len({ServableId("a", 1), ServableId("a", 1)}), 1)


class ServableRequestTest(unittest.TestCase):

  def test_str(self):
    self.assertEqual(str(ServableRequest.latest("m")), "Latest(m)")
    self.assertEqual(str(ServableRequest.earliest("m")), "Earliest(m)")
    self.assertEqual(str(ServableRequest.specific("m", 3)), "Specific(m, 3)")

  def test_constructors(self):
    self.assertEqual(
        ServableRequest.latest("m").auto_version_policy,
        AutoVersionPolicy.LATEST,
    )
    self.assertIsNone(ServableRequest.earliest("m").version)
    self.assertEqual(
        ServableRequest.from_id(ServableId("m", 4)),
        ServableRequest.specific("m", 4),
    )


class ServableDataTest(unittest.TestCase):

  def test_of_and_failed(self):
    sid = ServableId("m", 1)
    ok = ServableData.of(sid, "/path/1")
    self.assertTrue(ok.ok)
    self.assertEqual((ok.id, ok.data, ok.error), (sid, "/path/1", None))
    error = status.not_found("gone")
    bad = ServableData.failed(sid, error)
    self.assertFalse(bad.ok)
    self.assertIsNone(bad.data)
    self.assertEqual(bad.error, error)
    self.assertEqual(bad, ServableData.failed(sid, status.not_found("gone")))

  def test_rejects_data_and_error_together(self):
    with self.assertRaises(ValueError):
      ServableData(ServableId("m", 1), "x", status.unknown("e"))


class ServableStateTest(unittest.TestCase):

  def test_defaults_and_values(self):
    state = ServableState(ServableId("m", 1), ManagerState.AVAILABLE)
    self.assertIsNone(state.health)
    # Values match ModelVersionStatus.State in get_model_status.proto.
    self.assertEqual([s.value for s in ManagerState], [10, 20, 30, 40, 50])
    self.assertIn("AVAILABLE", str(state))


if __name__ == "__main__":
  unittest.main()
