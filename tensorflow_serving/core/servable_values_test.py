"""Tests for the small value types: ids, requests, data and states."""

import unittest

from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_id
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import servable_state
from tensorflow_serving.util import status


class ServableIdTest(unittest.TestCase):

  def test_str_is_upstream_debug_string(self):
    self.assertEqual(
        str(servable_id.ServableId("m", 1)), "{name: m version: 1}"
    )

  def test_ordering_and_hashing(self):
    ids = [
        servable_id.ServableId("b", 1),
        servable_id.ServableId("a", 2),
        servable_id.ServableId("a", 1),
    ]
    self.assertEqual(
        sorted(ids),
        [
            servable_id.ServableId("a", 1),
            servable_id.ServableId("a", 2),
            servable_id.ServableId("b", 1),
        ],
    )
    self.assertEqual(
        len({servable_id.ServableId("a", 1), servable_id.ServableId("a", 1)}), 1
    )


class ServableRequestTest(unittest.TestCase):

  def test_str(self):
    self.assertEqual(
        str(servable_request.ServableRequest.latest("m")), "Latest(m)"
    )
    self.assertEqual(
        str(servable_request.ServableRequest.earliest("m")), "Earliest(m)"
    )
    self.assertEqual(
        str(servable_request.ServableRequest.specific("m", 3)), "Specific(m, 3)"
    )

  def test_constructors(self):
    self.assertEqual(
        servable_request.ServableRequest.latest("m").auto_version_policy,
        servable_request.AutoVersionPolicy.LATEST,
    )
    self.assertIsNone(servable_request.ServableRequest.earliest("m").version)
    self.assertEqual(
        servable_request.ServableRequest.from_id(
            servable_id.ServableId("m", 4)
        ),
        servable_request.ServableRequest.specific("m", 4),
    )


class ServableDataTest(unittest.TestCase):

  def test_of_and_failed(self):
    sid = servable_id.ServableId("m", 1)
    ok = servable_data.ServableData.of(sid, "/path/1")
    self.assertTrue(ok.ok)
    self.assertEqual((ok.id, ok.data, ok.error), (sid, "/path/1", None))
    error = status.not_found("gone")
    bad = servable_data.ServableData.failed(sid, error)
    self.assertFalse(bad.ok)
    self.assertIsNone(bad.data)
    self.assertEqual(bad.error, error)
    self.assertEqual(
        bad, servable_data.ServableData.failed(sid, status.not_found("gone"))
    )

  def test_rejects_data_and_error_together(self):
    with self.assertRaises(ValueError):
      servable_data.ServableData(
          servable_id.ServableId("m", 1), "x", status.unknown("e")
      )


class ServableStateTest(unittest.TestCase):

  def test_defaults_and_values(self):
    state = servable_state.ServableState(
        servable_id.ServableId("m", 1), servable_state.ManagerState.AVAILABLE
    )
    self.assertIsNone(state.health)
    # Values match ModelVersionStatus.State in get_model_status.proto.
    self.assertEqual(
        [s.value for s in servable_state.ManagerState], [10, 20, 30, 40, 50]
    )
    self.assertIn("AVAILABLE", str(state))


if __name__ == "__main__":
  unittest.main()
