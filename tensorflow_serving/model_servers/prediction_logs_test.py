"""A Predict's log bytes parse to the PredictionLog message they stand for."""

from __future__ import annotations

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from tensorflow_serving.apis import logging_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.core import servable_id
from tensorflow_serving.model_servers import prediction_logs

TENSORS = {
    "float32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "int64": np.asarray([-1, 2**40], np.int64),
    "bool": np.asarray([[True], [False]]),
    "float16": np.asarray([0.5, -2.0], np.float16),
    "big_endian": np.asarray([1.5, 2.5], ">f8"),
    "transposed": np.arange(6, dtype=np.int32).reshape(2, 3).T,
    "scalar": np.float64(3.25),
    "empty": np.zeros((0, 3), np.float32),
    "uint8": np.asarray([0, 255], np.uint8),
    "complex64": np.asarray([1 + 2j], np.complex64),
    "strings": np.asarray([b"a", b"\xff\x00"], dtype=object),
}


def metadata() -> logging_pb2.LogMetadata:
  m = logging_pb2.LogMetadata(timestamp_secs=1_700_000_000)
  m.sampling_config.sampling_rate = 0.5
  m.saved_model_tags.extend(["serve", "gpu"])
  return m


class PredictLogBytesTest(parameterized.TestCase):

  def check(self, entry: prediction_logs.PredictEntry) -> None:
    m = metadata()
    got = prediction_log_pb2.PredictionLog.FromString(entry.serialize(m))
    self.assertEqual(got, entry.message(m))
    self.assertEqual(got.log_metadata.model_spec.name, entry.served.name)

  @parameterized.named_parameters(*TENSORS.items())
  def test_each_dtype_and_shape(self, value):
    value = np.asarray(value) if not isinstance(value, np.ndarray) else value
    self.check(
        prediction_logs.PredictEntry(
            servable_id.ServableId("m", 3),
            model_pb2.ModelSpec(name="m"),
            "serving_default",
            {"in": value},
            (),
            {"out": value},
        )
    )

  def test_every_input_output_and_filter(self):
    inputs = {k: np.asarray(v) for k, v in TENSORS.items()}
    self.check(
        prediction_logs.PredictEntry(
            servable_id.ServableId("model", 12345678901),
            model_pb2.ModelSpec(name="model"),
            "sig",
            inputs,
            ("out", "b"),
            {"out": inputs["float32"], "b": inputs["bool"]},
        )
    )

  def test_client_spec_kept_with_the_resolved_signature(self):
    for spec in (
        model_pb2.ModelSpec(name="m", signature_name="sig"),
        model_pb2.ModelSpec(name="m", version_label="stable"),
        model_pb2.ModelSpec(name="m", signature_name="other"),
    ):
      spec_with_version = model_pb2.ModelSpec()
      spec_with_version.CopyFrom(spec)
      spec_with_version.version.value = 7
      for client in (spec, spec_with_version):
        self.check(
            prediction_logs.PredictEntry(
                servable_id.ServableId("m", 0),
                client,
                "sig",
                {"x": np.ones(2, np.float32)},
                (),
                {},
            )
        )

  def test_empty_signature_and_unicode_names(self):
    self.check(
        prediction_logs.PredictEntry(
            servable_id.ServableId("modèle", 1),
            model_pb2.ModelSpec(name="modèle"),
            "",
            {"entrée": np.ones((1, 1), np.float32)},
            ("sortie",),
            {"sortie": np.ones(1, np.float32)},
        )
    )


if __name__ == "__main__":
  absltest.main()
