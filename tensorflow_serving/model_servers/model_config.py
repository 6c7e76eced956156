"""Reading the model set: a ModelServerConfig file, or the single-model flags."""

from __future__ import annotations

from google.protobuf import text_format

from tensorflow_serving.config import model_server_config_pb2

ModelServerConfig = model_server_config_pb2.ModelServerConfig
TENSORFLOW_PLATFORM = "tensorflow"


class ConfigError(Exception):
  """A config file that does not parse as text-format ModelServerConfig."""


def parse_model_server_config(path: str) -> ModelServerConfig:
  """Parses `path`; raises ConfigError with upstream's wording, or OSError."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  config = ModelServerConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as exc:
    raise ConfigError(
        "Error parsing text-format "
        f"tensorflow.serving.ModelServerConfig: {exc}"
    ) from exc
  return config


def single_model_config(name: str, base_path: str) -> ModelServerConfig:
  """The config --model_name/--model_base_path stand for."""
  config = ModelServerConfig()
  config.model_config_list.config.add(
      name=name, base_path=base_path, model_platform=TENSORFLOW_PLATFORM
  )
  return config
