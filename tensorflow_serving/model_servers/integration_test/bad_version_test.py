"""A corrupt new version is retried, ends in error, and costs no request.

Availability-preserving keeps the old version serving until an aspired one is
ready; a version that never loads therefore must leave clients untouched, and
its failure must be visible through GetModelStatus. A later good version must
still take over.
"""

from __future__ import annotations

import re
import time

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models

State = get_model_status_pb2.ModelVersionStatus.State
MAX_RETRIES = 2
RETRY_INTERVAL_S = 0.2
TIMEOUT_S = 60.0


class BadVersionTest(absltest.TestCase):

  def test_corrupt_version_is_retried_and_old_keeps_serving(self):
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.publish(1)
    publisher.stage(2, then=test_models.corrupt_saved_model)
    publisher.stage(3)

    retry_micros = int(RETRY_INTERVAL_S * 1e6)
    with lu.serving(
        base,
        f"--max_num_load_retries={MAX_RETRIES}",
        f"--load_retry_interval_micros={retry_micros}",
    ) as server:
      status = lu.StatusClient(server.grpc_address)
      with lu.ClientLoad(server.grpc_address, num_threads=4) as clients:
        lu.wait_for(lambda: clients.first_served(1), 30, "v1 to serve")
        publisher.publish(2)
        published = time.time()
        bad = lu.wait_for(
            lambda: (
                status.versions().get(2)
                if status.state(2) == State.END
                else None
            ),
            TIMEOUT_S,
            "version 2 to fail",
        )
        failed_after = time.time() - published
        # A few more polls: the failed version is not retried again, and
        # version 1 still answers everything.
        time.sleep(3 * lu.POLL_S)
        during_bad = clients.results()
        versions_while_bad = status.versions()
        attempts_after_polls = _load_attempts(server.log(), 2)
        publisher.publish(3)
        lu.wait_for(
            lambda: clients.first_served(3), TIMEOUT_S, "version 3 to serve"
        )
        lu.wait_for(
            lambda: status.state(1) == State.END,
            TIMEOUT_S,
            "version 1 to unload",
        )
        results = clients.stop()
      final = status.versions()
      status.close()
      log = server.log()

    attempts = _load_attempts(log, 2)
    retries = re.findall(
        r"Retrying load of servable \{name: m version: 2\}: " r"retry (\d+)",
        log,
    )
    print(
        f"requests sent: {len(results)}, failed: "
        f"{len(lu.failures(results))}; while version 2 was failing: "
        f"{len(during_bad)} requests, all from version 1"
    )
    print(
        f"version 2: {len(attempts)} load attempts (retries {retries}), "
        f"END after {failed_after:.2f} s with error "
        f"{bad.error_code}: {bad.error_message!r}"
    )

    self.assertEmpty(lu.failures(results), lu.summarize_failures(results))
    self.assertEqual({r.version for r in during_bad}, {1})
    self.assertEqual({r.version for r in results}, {1, 3})
    # One attempt plus --max_num_load_retries retries, then no more.
    self.assertLen(attempts, 1 + MAX_RETRIES)
    self.assertEqual(attempts_after_polls, attempts)
    self.assertEqual(retries, [str(i) for i in range(1, MAX_RETRIES + 1)])
    self.assertIn("saved_model.pb", attempts[0])
    self.assertEqual(bad.error_code, 15)  # DATA_LOSS, as upstream
    self.assertNotEmpty(bad.error_message)
    self.assertIn("saved_model.pb", bad.error_message)
    self.assertEqual(versions_while_bad[1].state, State.AVAILABLE)
    # Retries are spaced by the interval, and the whole failure is quick.
    self.assertGreaterEqual(failed_after, MAX_RETRIES * RETRY_INTERVAL_S)
    self.assertLess(failed_after, lu.POLL_S + 10)
    self.assertEqual(final[3].state, State.AVAILABLE)
    self.assertEqual(final[2].state, State.END)
    self.assertEqual(final[1].state, State.END)
    self.assertEqual(final[1].error_code, 0)


def _load_attempts(log: str, version: int) -> list[str]:
  """The error of each failed load attempt of `version`, from the log."""
  return re.findall(
      rf"Servable \{{name: m version: {version}\}} load failure: (.*)", log
  )


if __name__ == "__main__":
  absltest.main()
