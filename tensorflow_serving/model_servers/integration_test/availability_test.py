"""Version swaps under load lose no request (availability-preserving policy).

Four client threads send Predict(latest) back to back while ten new versions
are published one after another. Each reply names the version that computed
it (y = x + version), so the test sees exactly when each version took over;
the server's per-version log lines show how many versions were in memory.
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
NUM_NEW_VERSIONS = 10
NUM_CLIENT_THREADS = 4
# Beyond the poll period and the logged load time: the manager tick, the
# next request, and a busy 2-core machine.
SLACK_S = 3.0
# Per swap; far above the expected ~1-2 s, only there to bound a hang.
SWAP_TIMEOUT_S = 60.0
# How long a warmup record spins, to keep a version in LOADING a while.
SLOW_LOAD_S = 1.0


class AvailabilityTest(absltest.TestCase):

  def test_no_request_fails_while_versions_swap(self):
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.publish(1)
    new_versions = list(range(2, 2 + NUM_NEW_VERSIONS))
    for version in new_versions:  # Export now, outside the timed swaps.
      publisher.stage(version)

    published: dict[int, float] = {}
    served: dict[int, float] = {}
    with lu.serving(base) as server:
      status = lu.StatusClient(server.grpc_address)
      with lu.StatusSampler(server.grpc_address) as sampler:
        with lu.ClientLoad(server.grpc_address, NUM_CLIENT_THREADS) as clients:
          lu.wait_for(lambda: clients.first_served(1), 30, "v1 to serve")
          for version in new_versions:
            publisher.publish(version)
            published[version] = time.time()
            served[version] = lu.wait_for(
                lambda v=version: clients.first_served(v),
                SWAP_TIMEOUT_S,
                f"version {version} to serve",
            )
            # Let the old version finish unloading under load before the
            # next swap, so every swap is a complete load + unload.
            lu.wait_for(
                lambda v=version: status.state(v - 1) == State.END,
                SWAP_TIMEOUT_S,
                f"version {version - 1} to unload",
            )
          time.sleep(0.5)
        results = clients.stop()
      final = status.versions()
      status.close()
      log = server.log()

    events = lu.lifecycle_events(log)
    failed = lu.failures(results)
    latencies = [r.latency_s for r in results]
    # A swap lasts from publication until the old version is unloaded.
    windows = []
    for version in new_versions:
      done = lu.event_time(events, "Done unloading", version - 1)
      windows.append((published[version], done or time.time()))
    swap_latencies = [
        r.latency_s
        for r in results
        if any(r.start <= end and r.end >= start for start, end in windows)
    ]
    in_memory, peak = lu.max_versions_in_memory(events)

    print(
        f"requests sent: {len(results)}, failed: {len(failed)} "
        f"({NUM_CLIENT_THREADS} client threads, "
        f"{results[-1].end - results[0].start:.1f} s)"
    )
    print(
        f"latency p50 {lu.percentile(latencies, 50) * 1e3:.1f} ms, "
        f"p99 {lu.percentile(latencies, 99) * 1e3:.1f} ms, "
        f"max {max(latencies) * 1e3:.1f} ms; during swaps: "
        f"{len(swap_latencies)} requests, max "
        f"{max(swap_latencies) * 1e3:.1f} ms"
    )
    print(
        f"most versions in memory at once (log): {in_memory} {peak}; "
        f"most held per GetModelStatus ({sampler.samples} samples): "
        f"{sampler.max_held} {sampler.max_held_versions}"
    )
    for version in new_versions:
      load_s = lu.load_seconds(events, version)
      print(
          f"version {version}: publish -> first served "
          f"{served[version] - published[version]:.2f} s (load "
          f"{load_s:.2f} s)"
      )

    self.assertEmpty(failed, lu.summarize_failures(results))
    self.assertEqual({r.version for r in results}, {1, *new_versions})
    for version in new_versions:
      load_s = lu.load_seconds(events, version)
      self.assertIsNotNone(load_s, f"no load of {version} in the log")
      self.assertLess(
          served[version] - published[version],
          lu.POLL_S + load_s + SLACK_S,
          f"version {version}",
      )
    # The new version loads while the old serves, so two is also the norm.
    self.assertEqual(in_memory, 2, peak)
    self.assertLessEqual(sampler.max_held, 2, sampler.max_held_versions)
    self.assertEqual(final[new_versions[-1]].state, State.AVAILABLE)
    for version in range(1, new_versions[-1]):
      self.assertEqual(final[version].state, State.END)
      self.assertEqual(final[version].error_code, 0)
    # Once a reply came from a version, no later request gets an older one.
    self.assertEqual(lu.version_regressions(results), [])

  def test_publishing_during_loads_keeps_two_versions_at_most(self):
    """Each version is replaced while it is still loading (slowed by warmup).

    The version being loaded is no longer aspired but finishes loading; the
    policy must then unload the older of the two un-aspired versions before
    loading the newest, never holding three.
    """
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.publish(1)
    slow_warmup = [
        test_models.predict_request(
            [0.0], signature=test_models.SLOW_SIGNATURE, seconds=SLOW_LOAD_S
        )
    ]
    new_versions = [2, 3, 4]
    for version in new_versions:
      publisher.stage(
          version,
          then=lambda d: test_models.write_warmup_requests(d, slow_warmup),
      )

    with lu.serving(base) as server:
      status = lu.StatusClient(server.grpc_address)
      with lu.ClientLoad(server.grpc_address, NUM_CLIENT_THREADS) as clients:
        lu.wait_for(lambda: clients.first_served(1), 30, "v1 to serve")
        for version in new_versions:
          publisher.publish(version)
          if version != new_versions[-1]:
            lu.wait_for(
                lambda v=version: "Loading servable version {name: m "
                f"version: {v}}}" in server.log(),
                SWAP_TIMEOUT_S,
                f"version {version} to start loading",
            )
        lu.wait_for(
            lambda: clients.first_served(new_versions[-1]),
            SWAP_TIMEOUT_S,
            "the last version to serve",
        )
        lu.wait_for(
            lambda: [
                v for v, s in status.versions().items() if s.state != State.END
            ]
            == [new_versions[-1]],
            SWAP_TIMEOUT_S,
            "older versions to unload",
        )
        results = clients.stop()
      status.close()
      log = server.log()

    events = lu.lifecycle_events(log)
    in_memory, peak = lu.max_versions_in_memory(events)
    order = [
        f"{e.kind} {e.version}"
        for e in events
        if e.kind in ("Loading", "Successfully loaded", "Done unloading")
    ]
    print(
        f"replaced while loading: {len(results)} requests, "
        f"{len(lu.failures(results))} failed, versions served "
        f"{sorted({r.version for r in results})}; most in memory at once: "
        f"{in_memory} {peak}\n  " + ", ".join(order)
    )
    self.assertEmpty(lu.failures(results), lu.summarize_failures(results))
    self.assertEqual(in_memory, 2, peak)
    self.assertEqual(lu.version_regressions(results), [])
    # Every published version was loaded (it was already loading when the
    # next one arrived), and each but the last is unloaded again.
    for version in new_versions:
      self.assertIsNotNone(
          lu.event_time(events, "Successfully loaded", version), version
      )
    for version in [1, *new_versions[:-1]]:
      self.assertIsNotNone(
          lu.event_time(events, "Done unloading", version), version
      )


if __name__ == "__main__":
  absltest.main()
