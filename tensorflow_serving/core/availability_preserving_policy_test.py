"""Tests every branch of AvailabilityPreservingPolicy.get_next_action."""

import unittest

from tensorflow_serving.core import aspired_version_policy
from tensorflow_serving.core import availability_preserving_policy
from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import servable_id

State = loader_harness.LoaderHarness.State


def snap(version, state, aspired):
  return aspired_version_policy.AspiredServableStateSnapshot(
      servable_id.ServableId("m", version), state, aspired
  )


def unload(version):
  return aspired_version_policy.ServableAction(
      aspired_version_policy.Action.UNLOAD, servable_id.ServableId("m", version)
  )


def load(version):
  return aspired_version_policy.ServableAction(
      aspired_version_policy.Action.LOAD, servable_id.ServableId("m", version)
  )


class AvailabilityPreservingPolicyTest(unittest.TestCase):

  def setUp(self):
    super().setUp()
    self.policy = availability_preserving_policy.AvailabilityPreservingPolicy()

  def next_action(self, *versions):
    return self.policy.get_next_action(list(versions))

  def test_nothing_managed(self):
    self.assertIsNone(self.next_action())

  def test_no_aspired_unloads_lowest_unaspired_ready(self):
    self.assertEqual(
        self.next_action(
            snap(3, State.READY, False),
            snap(1, State.READY, False),
            snap(2, State.READY, False),
        ),
        unload(1),
    )

  def test_no_aspired_and_nothing_ready_does_nothing(self):
    self.assertIsNone(
        self.next_action(
            snap(1, State.UNLOADING, False), snap(2, State.DISABLED, False)
        )
    )

  def test_aspired_serving_unloads_unaspired_ready(self):
    self.assertEqual(
        self.next_action(
            snap(1, State.READY, False), snap(2, State.READY, True)
        ),
        unload(1),
    )

  def test_aspired_serving_unload_beats_load(self):
    self.assertEqual(
        self.next_action(
            snap(1, State.READY, False),
            snap(2, State.READY, True),
            snap(3, State.NEW, True),
        ),
        unload(1),
    )

  def test_several_unaspired_ready_unload_lowest_without_aspired_ready(self):
    self.assertEqual(
        self.next_action(
            snap(2, State.READY, False),
            snap(1, State.READY, False),
            snap(3, State.NEW, True),
        ),
        unload(1),
    )

  def test_single_unaspired_ready_kept_while_new_loads(self):
    # The old version keeps serving until the new one is READY.
    self.assertEqual(
        self.next_action(snap(1, State.READY, False), snap(2, State.NEW, True)),
        load(2),
    )

  def test_single_unaspired_ready_kept_while_new_is_loading(self):
    self.assertIsNone(
        self.next_action(
            snap(1, State.READY, False), snap(2, State.LOADING, True)
        )
    )

  def test_single_unaspired_ready_kept_when_new_failed(self):
    self.assertIsNone(
        self.next_action(
            snap(1, State.READY, False), snap(2, State.ERROR, True)
        )
    )

  def test_loads_highest_aspired_new(self):
    self.assertEqual(
        self.next_action(
            snap(1, State.NEW, True),
            snap(3, State.NEW, True),
            snap(2, State.NEW, True),
        ),
        load(3),
    )

  def test_aspired_serving_and_nothing_to_unload_loads_next(self):
    self.assertEqual(
        self.next_action(
            snap(1, State.READY, True),
            snap(2, State.NEW, True),
            snap(3, State.DISABLED, False),
        ),
        load(2),
    )

  def test_steady_state_does_nothing(self):
    self.assertIsNone(
        self.next_action(snap(1, State.READY, True), snap(2, State.ERROR, True))
    )


if __name__ == "__main__":
  unittest.main()
