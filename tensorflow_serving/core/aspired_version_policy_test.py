"""Tests for the AspiredVersionPolicy helpers."""

import unittest

from tensorflow_serving.core import aspired_version_policy
from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import servable_id

State = loader_harness.LoaderHarness.State


def snap(version, state, aspired):
  return aspired_version_policy.AspiredServableStateSnapshot(
      servable_id.ServableId("m", version), state, aspired
  )


class HighestAspiredNewTest(unittest.TestCase):

  def test_picks_highest_aspired_new(self):
    versions = [
        snap(1, State.NEW, True),
        snap(3, State.NEW, True),
        snap(2, State.NEW, True),
        snap(4, State.READY, True),
        snap(5, State.NEW, False),
    ]
    self.assertEqual(
        aspired_version_policy.get_highest_aspired_new_servable_id(versions),
        servable_id.ServableId("m", 3),
    )

  def test_none_when_nothing_qualifies(self):
    self.assertIsNone(
        aspired_version_policy.get_highest_aspired_new_servable_id([])
    )
    self.assertIsNone(
        aspired_version_policy.get_highest_aspired_new_servable_id(
            [snap(1, State.NEW, False), snap(2, State.ERROR, True)]
        )
    )

  def test_action_str(self):
    self.assertEqual(
        str(
            aspired_version_policy.ServableAction(
                aspired_version_policy.Action.LOAD,
                servable_id.ServableId("m", 1),
            )
        ),
        "{action: load id: {name: m version: 1}}",
    )


if __name__ == "__main__":
  unittest.main()
