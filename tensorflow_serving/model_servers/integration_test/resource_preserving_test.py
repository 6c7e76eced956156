"""--aspired_version_policy=resource_preserving: one version at a time.

The old version is unloaded before the new one loads, so memory never holds
two; the price is a gap in which clients get NOT_FOUND. The test measures
that gap, from the clients' side and from the server's log.
"""

from __future__ import annotations

import time

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models

State = get_model_status_pb2.ModelVersionStatus.State
NUM_NEW_VERSIONS = 4
SWAP_TIMEOUT_S = 60.0
NOT_FOUND_MESSAGE = f"Servable not found for request: Latest({lu.MODEL})"


class ResourcePreservingTest(absltest.TestCase):

  def test_never_two_versions_and_gap_is_bounded(self):
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.publish(1)
    new_versions = list(range(2, 2 + NUM_NEW_VERSIONS))
    for version in new_versions:
      publisher.stage(version)

    published: dict[int, float] = {}
    with lu.serving(
        base, "--aspired_version_policy=resource_preserving"
    ) as server:
      status = lu.StatusClient(server.grpc_address)
      with lu.StatusSampler(server.grpc_address) as sampler:
        with lu.ClientLoad(server.grpc_address, num_threads=4) as clients:
          lu.wait_for(lambda: clients.first_served(1), 30, "v1 to serve")
          for version in new_versions:
            publisher.publish(version)
            published[version] = time.time()
            lu.wait_for(
                lambda v=version: clients.first_served(v),
                SWAP_TIMEOUT_S,
                f"version {version} to serve",
            )
          time.sleep(0.3)
          results = clients.stop()
      final = status.versions()
      status.close()
      log = server.log()

    events = lu.lifecycle_events(log)
    failed = lu.failures(results)
    in_memory, peak = lu.max_versions_in_memory(events)
    print(
        f"requests sent: {len(results)}, failed: {len(failed)} "
        f"(all NOT_FOUND, during the gaps)"
    )
    client_gaps, server_gaps = [], []
    for version in new_versions:
      old = version - 1
      last_old = max(r.end for r in results if r.ok and r.version == old)
      first_new = min(r.end for r in results if r.ok and r.version == version)
      not_found = [r for r in failed if last_old <= r.start <= first_new]
      # Server side: the old version leaves the serving map as it starts
      # quiescing; the new one enters it once loaded.
      gap = lu.event_time(
          events, "Successfully loaded", version
      ) - lu.event_time(events, "Quiescing", old)
      client_gaps.append(first_new - last_old)
      server_gaps.append(gap)
      print(
          f"swap {old} -> {version}: gap {gap * 1e3:.0f} ms per log "
          f"(unload {old} then load {version} "
          f"{lu.load_seconds(events, version) * 1e3:.0f} ms), "
          f"{(first_new - last_old) * 1e3:.0f} ms between replies, "
          f"{len(not_found)} NOT_FOUND"
      )
    print(
        f"availability gap: max {max(server_gaps) * 1e3:.0f} ms (log), "
        f"max {max(client_gaps) * 1e3:.0f} ms (clients); most versions in "
        f"memory at once: {in_memory} {peak}, per GetModelStatus: "
        f"{sampler.max_held}"
    )

    self.assertEqual(in_memory, 1, peak)
    self.assertLessEqual(sampler.max_held, 1, sampler.max_held_versions)
    for version in new_versions:
      # The new version starts loading only after the old one is gone.
      self.assertGreaterEqual(
          lu.event_time(events, "Loading", version),
          lu.event_time(events, "Done unloading", version - 1),
      )
    for result in failed:
      self.assertEqual(
          (result.code, result.message), ("NOT_FOUND", NOT_FOUND_MESSAGE)
      )
    self.assertNotEmpty(failed, "expected clients to observe the gap")
    self.assertEqual(lu.version_regressions(results), [])
    self.assertEqual(final[new_versions[-1]].state, State.AVAILABLE)
    # The gap is one unload plus one load of a tiny model; seconds would
    # mean the manager waited for something (a poll, a tick) it should not.
    self.assertLess(max(server_gaps), 5.0)


if __name__ == "__main__":
  absltest.main()
