"""BatchingOptions: upstream defaults and upstream's validation messages."""

from __future__ import annotations

from absl.testing import absltest
from google.protobuf import text_format

from tensorflow_serving.batching import batching_options
from tensorflow_serving.util import config_protos
from tensorflow_serving.util import status


def _options(text: str) -> batching_options.BatchingOptions:
  params = config_protos.BatchingParameters()
  text_format.Parse(text, params)
  return batching_options.BatchingOptions.from_proto(params)


class BatchingOptionsTest(absltest.TestCase):

  def assert_invalid(self, text: str, message: str) -> None:
    with self.assertRaises(status.ServingError) as ctx:
      _options(text)
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertEqual(ctx.exception.message, message)

  def test_defaults(self):
    options = _options("")
    self.assertEqual(options.max_batch_size, 1000)
    self.assertEqual(options.batch_timeout_micros, 0)
    self.assertEqual(options.max_enqueued_batches, 10)
    self.assertEqual(
        options.num_batch_threads, batching_options.default_num_batch_threads()
    )
    self.assertGreaterEqual(options.num_batch_threads, 1)
    self.assertEqual(options.thread_pool_name, "model_server_batch_threads")
    self.assertEqual(options.allowed_batch_sizes, ())
    self.assertFalse(options.pad_variable_length_inputs)
    self.assertFalse(options.enable_large_batch_splitting)
    self.assertEqual(options.max_execution_batch_size, 1000)
    self.assertEqual(options.execution_batch_size, 1000)

  def test_all_fields(self):
    options = _options("""
        max_batch_size { value: 64 }
        batch_timeout_micros { value: 2000 }
        max_enqueued_batches { value: 3 }
        num_batch_threads { value: 5 }
        thread_pool_name { value: "pool" }
        allowed_batch_sizes: [8, 16, 32]
        pad_variable_length_inputs: true
        enable_large_batch_splitting { value: true }
        max_execution_batch_size { value: 32 }
    """)
    self.assertEqual(
        options,
        batching_options.BatchingOptions(
            max_batch_size=64,
            batch_timeout_micros=2000,
            max_enqueued_batches=3,
            num_batch_threads=5,
            thread_pool_name="pool",
            allowed_batch_sizes=(8, 16, 32),
            pad_variable_length_inputs=True,
            enable_large_batch_splitting=True,
            max_execution_batch_size=32,
        ),
    )
    self.assertEqual(options.execution_batch_size, 32)

  def test_max_execution_batch_size_ignored_without_splitting(self):
    options = _options(
        "max_batch_size { value: 64 } " "max_execution_batch_size { value: 8 }"
    )
    self.assertEqual(options.execution_batch_size, 64)
    self.assertEqual(options.max_execution_batch_size, 64)

  def test_splitting_defaults_execution_size_to_max_batch_size(self):
    options = _options(
        "max_batch_size { value: 64 } "
        "enable_large_batch_splitting { value: true }"
    )
    self.assertEqual(options.execution_batch_size, 64)

  def test_last_allowed_size_must_match_max_batch_size(self):
    self.assert_invalid(
        "max_batch_size { value: 32 } allowed_batch_sizes: [8, 16]",
        "Last entry in allowed_batch_sizes must match max_batch_size; last "
        "entry was 16; expected 32",
    )
    # Unset max_batch_size means the default, 1000.
    self.assert_invalid(
        "allowed_batch_sizes: [8, 16]",
        "Last entry in allowed_batch_sizes must match max_batch_size; last "
        "entry was 16; expected 1000",
    )

  def test_order_checked_only_with_splitting(self):
    options = _options(
        "max_batch_size { value: 32 } " "allowed_batch_sizes: [16, 8, 32]"
    )
    self.assertEqual(options.allowed_batch_sizes, (16, 8, 32))
    self.assert_invalid(
        "max_batch_size { value: 32 } allowed_batch_sizes: [16, 8, 32] "
        "enable_large_batch_splitting { value: true }",
        "allowed_batch_sizes entries must be monotonically increasing",
    )
    self.assert_invalid(
        "max_batch_size { value: 32 } allowed_batch_sizes: [8, 8, 32] "
        "enable_large_batch_splitting { value: true }",
        "allowed_batch_sizes entries must be monotonically increasing",
    )

  def test_splitting_allowed_sizes_end_at_execution_size(self):
    options = _options(
        "max_batch_size { value: 100 } "
        "enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 32 } "
        "allowed_batch_sizes: [8, 32]"
    )
    self.assertEqual(options.allowed_batch_sizes, (8, 32))
    self.assert_invalid(
        "max_batch_size { value: 100 } "
        "enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 32 } allowed_batch_sizes: [8, 16]",
        "Last entry in allowed_batch_sizes must be equal to "
        "max_execution_batch_size; last entry was 16; expected 32",
    )
    self.assert_invalid(
        "max_batch_size { value: 32 } "
        "enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 32 } allowed_batch_sizes: [8, 64]",
        "Last entry in allowed_batch_sizes must be less than or equal to "
        "max_batch_size; last entry was 64; expected 32",
    )

  def test_execution_size_cannot_exceed_max_batch_size(self):
    self.assert_invalid(
        "max_batch_size { value: 16 } "
        "enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 32 }",
        "When enable_large_batch_splitting is true, input_batch_size_limit "
        "must be greater than or equal to max_execution_batch_size; "
        "max_batch_size is 16 and max_execution_batch_size is 32",
    )

  def test_positive_values(self):
    self.assert_invalid(
        "num_batch_threads { value: 0 }",
        "num_batch_threads must be positive; was 0",
    )
    self.assert_invalid(
        "max_batch_size { value: 0 }", "max_batch_size must be positive; was 0"
    )
    self.assert_invalid(
        "batch_timeout_micros { value: -1 }",
        "batch_timeout_micros must be non-negative; was -1",
    )
    self.assert_invalid(
        "max_enqueued_batches { value: -2 }",
        "max_enqueued_batches must be positive; was -2",
    )
    self.assert_invalid(
        "enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 0 }",
        "max_execution_batch_size must be positive; was 0",
    )

  def test_zero_enqueued_batches_means_one_unless_splitting(self):
    self.assertEqual(
        _options("max_enqueued_batches { value: 0 }").max_enqueued_batches, 1
    )
    self.assert_invalid(
        "max_enqueued_batches { value: 0 } "
        "enable_large_batch_splitting { value: true }",
        "max_enqueued_batches must be positive; was 0",
    )

  def test_padded_batch_size(self):
    options = _options(
        "max_batch_size { value: 32 } " "allowed_batch_sizes: [4, 8, 32]"
    )
    self.assertEqual(
        [options.padded_batch_size(n) for n in (1, 4, 5, 9, 32)],
        [4, 4, 8, 32, 32],
    )
    self.assertEqual(_options("").padded_batch_size(7), 7)


if __name__ == "__main__":
  absltest.main()
