"""The half_plus_two suite again, with --enable_batching.

Upstream's batching session concatenates requests along dimension 0, so
its answers are the same except for rank-0 inputs, which it refuses with
INVALID_ARGUMENT "Batching Run() input tensors must have at least one
dimension" (batching/batching_util.cc ComputeTensorBatchSize).
"""

from __future__ import annotations

from absl.testing import absltest

from tensorflow_serving.model_servers.fidelity_test import half_plus_two_test


class HalfPlusTwoBatchingTest(half_plus_two_test.HalfPlusTwoTest):
  SUITE = "half_plus_two_batching"
  FLAGS = ("--enable_batching",)
  BATCHING = True


if __name__ == "__main__":
  absltest.main()
