"""Tests for the AspiredVersionPolicy helpers."""

import unittest

from tensorflow_serving.core.aspired_version_policy import Action
from tensorflow_serving.core.aspired_version_policy import (
    AspiredServableStateSnapshot,
)
from tensorflow_serving.core.aspired_version_policy import ServableAction
from tensorflow_serving.core.aspired_version_policy import (
    get_highest_aspired_new_servable_id,
)
from tensorflow_serving.core.loader_harness import LoaderHarness
from tensorflow_serving.core.servable_id import ServableId

State = LoaderHarness.State


def snap(version, state, aspired):
  return AspiredServableStateSnapshot(ServableId("m", version), state, aspired)


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
        get_highest_aspired_new_servable_id(versions), ServableId("m", 3)
    )

  def test_none_when_nothing_qualifies(self):
    self.assertIsNone(get_highest_aspired_new_servable_id([]))
    self.assertIsNone(
        get_highest_aspired_new_servable_id(
            [snap(1, State.NEW, False), snap(2, State.ERROR, True)]
        )
    )

  def test_action_str(self):
    self.assertEqual(
        str(ServableAction(Action.LOAD, ServableId("m", 1))),
        "{action: load id: {name: m version: 1}}",
    )


if __name__ == "__main__":
  unittest.main()
