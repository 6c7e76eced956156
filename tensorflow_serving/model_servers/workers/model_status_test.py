"""Merging the workers' GetModelStatus answers into one."""

from __future__ import annotations

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.model_servers.workers import model_status
from tensorflow_serving.util import status

State = get_model_status_pb2.ModelVersionStatus.State
START, LOADING, AVAILABLE, UNLOADING, END = (
    State.START,
    State.LOADING,
    State.AVAILABLE,
    State.UNLOADING,
    State.END,
)


def _reply(*versions) -> model_status.Reply:
  """A worker's OK answer; each version is (number, state[, error])."""
  response = get_model_status_pb2.GetModelStatusResponse()
  for version, state, *error in sorted(versions, reverse=True):
    entry = response.model_version_status.add(version=version, state=state)
    entry.status.SetInParent()
    if error:
      entry.status.error_code = int(status.Code.UNKNOWN)
      entry.status.error_message = error[0]
  return model_status.Reply(0, "", response.SerializeToString())


_NOT_FOUND = model_status.Reply(
    int(status.Code.NOT_FOUND), "Could not find any versions of model m"
)


def _states(response) -> list[tuple[int, int]]:
  return [(e.version, e.state) for e in response.model_version_status]


class MergeTest(absltest.TestCase):

  def test_agreeing_workers_answer_as_one(self):
    merged = model_status.merge(
        [_reply((2, AVAILABLE), (1, END)), _reply((2, AVAILABLE), (1, END))]
    )
    self.assertEqual(_states(merged), [(2, AVAILABLE), (1, END)])
    self.assertEqual(
        merged,
        get_model_status_pb2.GetModelStatusResponse.FromString(
            _reply((2, AVAILABLE), (1, END)).payload
        ),
    )

  def test_a_retrying_workers_load_error_is_shown_while_loading(self):
    retrying = get_model_status_pb2.GetModelStatusResponse()
    entry = retrying.model_version_status.add(version=2, state=LOADING)
    entry.status.error_message = "Load attempt 1 of 6 failed, retrying"
    for others in ((2, LOADING), (2, AVAILABLE)):
      merged = model_status.merge(
          [
              _reply(others),
              model_status.Reply(0, "", retrying.SerializeToString()),
          ]
      )
      (version,) = merged.model_version_status
      self.assertEqual(version.state, LOADING)
      self.assertEqual(version.status.error_code, 0)
      self.assertEqual(
          version.status.error_message, "Load attempt 1 of 6 failed, retrying"
      )

  def test_a_new_version_is_available_only_once_every_worker_has_it(self):
    rolling = [
        _reply((2, AVAILABLE), (1, END)),
        _reply((2, LOADING), (1, AVAILABLE)),
    ]
    # Version 1 is gone from one worker: a client may not rely on it either.
    self.assertEqual(
        _states(model_status.merge(rolling)), [(2, LOADING), (1, END)]
    )

  def test_the_least_advanced_worker_sets_the_state(self):
    merged = model_status.merge(
        [_reply((3, LOADING)), _reply((3, START)), _reply((3, AVAILABLE))]
    )
    self.assertEqual(_states(merged), [(3, START)])
    merged = model_status.merge([_reply((1, UNLOADING)), _reply((1, END))])
    self.assertEqual(_states(merged), [(1, UNLOADING)])

  def test_a_worker_that_has_not_seen_a_version_yet_counts_as_start(self):
    merged = model_status.merge(
        [_reply((2, AVAILABLE), (1, END)), _reply((1, AVAILABLE))]
    )
    self.assertEqual(_states(merged), [(2, START), (1, END)])
    # Nor when it answers NOT_FOUND (it knows no version at all yet).
    merged = model_status.merge([_reply((2, AVAILABLE)), _NOT_FOUND])
    self.assertEqual(_states(merged), [(2, START)])

  def test_an_old_version_a_restarted_worker_never_saw_stays_end(self):
    merged = model_status.merge(
        [_reply((2, AVAILABLE), (1, END)), _reply((2, AVAILABLE))]
    )
    self.assertEqual(_states(merged), [(2, AVAILABLE), (1, END)])

  def test_an_error_in_any_worker_is_reported(self):
    merged = model_status.merge(
        [_reply((2, AVAILABLE)), _reply((2, END, "could not load"))]
    )
    (entry,) = merged.model_version_status
    self.assertEqual(entry.state, END)
    self.assertEqual(entry.status.error_message, "could not load")

  def test_a_model_no_worker_knows_is_the_first_error(self):
    with self.assertRaises(status.ServingError) as caught:
      model_status.merge([_NOT_FOUND, _NOT_FOUND])
    self.assertEqual(caught.exception.code, status.Code.NOT_FOUND)
    self.assertEqual(
        caught.exception.message, "Could not find any versions of model m"
    )

  def test_no_answer_at_all_is_unavailable(self):
    with self.assertRaises(status.ServingError) as caught:
      model_status.merge([])
    self.assertEqual(caught.exception.code, status.Code.UNAVAILABLE)


if __name__ == "__main__":
  absltest.main()
