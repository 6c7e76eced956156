"""Device selection: what a CPU or CUDA build does with and without a GPU."""

from absl.testing import absltest
from tensorflow.core.protobuf import config_pb2

from tensorflow_serving.servables.tensorflow import device


class DeviceTest(absltest.TestCase):

  def test_cpu_build_hides_gpus(self):
    placement = device.select_placement(
        False, list_gpus=lambda: ["/physical_device:GPU:0"]
    )
    self.assertFalse(placement.use_gpu)
    config = placement.apply(config_pb2.ConfigProto())
    self.assertEqual(config.device_count["GPU"], 0)

  def test_cuda_build_uses_visible_gpu(self):
    placement = device.select_placement(
        True, list_gpus=lambda: ["/physical_device:GPU:0"]
    )
    self.assertTrue(placement.use_gpu)
    self.assertIn("GPU", placement.description)
    config = placement.apply(
        config_pb2.ConfigProto(intra_op_parallelism_threads=3)
    )
    self.assertNotIn("GPU", config.device_count)
    self.assertTrue(config.allow_soft_placement)
    self.assertEqual(config.intra_op_parallelism_threads, 3)

  def test_cuda_build_without_gpu_falls_back_to_cpu_and_says_so(self):
    with self.assertLogs(level="WARNING") as logs:
      placement = device.select_placement(True, list_gpus=lambda: [])
    self.assertFalse(placement.use_gpu)
    self.assertIn("no GPU visible", placement.description)
    self.assertTrue(any("no GPU is visible" in line for line in logs.output))

  def test_real_listing_runs_here(self):
    # On this CPU-only machine the real lister returns nothing; the call
    # itself must work (it is what a CUDA build runs at start-up).
    placement = device.select_placement(True)
    self.assertIsInstance(placement.use_gpu, bool)


if __name__ == "__main__":
  absltest.main()
