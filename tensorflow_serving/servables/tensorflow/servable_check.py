"""Static proof that every bundle satisfies the servable contract.

Nothing calls these functions; mypy (tools/lint.sh) type-checks their
returns, so a bundle that drifts from `servable.Servable` (or the batching
wrapper from `servable.BatchingServable`) fails CI instead of a request.
"""

from __future__ import annotations

from tensorflow_serving.batching import batching_session
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import servable
from tensorflow_serving.servables.tensorflow import tflite_bundle


def saved_model(
    bundle: saved_model_bundle.SavedModelBundle,
) -> servable.Servable:
  return bundle


def tflite(bundle: tflite_bundle.TfLiteBundle) -> servable.Servable:
  return bundle


def batching(
    bundle: batching_session.BatchingBundle,
) -> servable.BatchingServable:
  return bundle
