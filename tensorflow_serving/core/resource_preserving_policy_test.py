"""Tests every branch of ResourcePreservingPolicy.get_next_action."""

import unittest

from tensorflow_serving.core import aspired_version_policy
from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import resource_preserving_policy
from tensorflow_serving.core import servable_id

State = loader_harness.LoaderHarness.State


def snap(version, state, aspired):
  return aspired_version_policy.AspiredServableStateSnapshot(
      servable_id.ServableId("m", version), state, aspired
  )


class ResourcePreservingPolicyTest(unittest.TestCase):

  def setUp(self):
    super().setUp()
    self.policy = resource_preserving_policy.ResourcePreservingPolicy()

  def next_action(self, *versions):
    return self.policy.get_next_action(list(versions))

  def test_nothing_managed(self):
    self.assertIsNone(self.next_action())

  def test_unloads_first_unaspired_ready_before_loading(self):
    self.assertEqual(
        self.next_action(
            snap(2, State.READY, False),
            snap(1, State.READY, False),
            snap(3, State.NEW, True),
        ),
        aspired_version_policy.ServableAction(
            aspired_version_policy.Action.UNLOAD, servable_id.ServableId("m", 2)
        ),
    )

  def test_waits_for_unaspired_versions_to_finish(self):
    for state in (
        State.NEW,
        State.LOAD_REQUESTED,
        State.LOADING,
        State.UNLOAD_REQUESTED,
        State.QUIESCING,
        State.QUIESCED,
        State.UNLOADING,
    ):
      with self.subTest(state=state):
        self.assertIsNone(
            self.next_action(snap(1, state, False), snap(2, State.NEW, True))
        )

  def test_loads_once_unaspired_versions_finished(self):
    self.assertEqual(
        self.next_action(
            snap(1, State.DISABLED, False),
            snap(2, State.ERROR, False),
            snap(3, State.NEW, True),
            snap(4, State.NEW, True),
        ),
        aspired_version_policy.ServableAction(
            aspired_version_policy.Action.LOAD, servable_id.ServableId("m", 4)
        ),
    )

  def test_nothing_to_load(self):
    self.assertIsNone(
        self.next_action(
            snap(1, State.READY, True), snap(2, State.DISABLED, False)
        )
    )


if __name__ == "__main__":
  unittest.main()
