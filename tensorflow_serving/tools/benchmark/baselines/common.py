"""What the baselines share: finding and loading the model to serve."""

from __future__ import annotations

import os
from typing import Any


def latest_version(model_base_path: str) -> tuple[int, str]:
  """(version, path) of the highest integer-named directory, like the server.

  The baselines serve one version, picked the way a model server's default
  `latest` policy would, so all of them run the very same SavedModel.
  """
  versions = [
      int(name)
      for name in os.listdir(model_base_path)
      if name.isdigit() and os.path.isdir(os.path.join(model_base_path, name))
  ]
  if not versions:
    raise FileNotFoundError(f"no version directory under {model_base_path}")
  version = max(versions)
  return version, os.path.join(model_base_path, str(version))


def load_model(model_base_path: str) -> tuple[int, Any]:
  """(version, loaded) via tf.saved_model.load, as a TF2 user would."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  version, path = latest_version(model_base_path)
  return version, tf.saved_model.load(path)
