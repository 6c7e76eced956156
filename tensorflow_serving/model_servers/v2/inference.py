"""What both v2 transports share: model specs, the decoded request, metadata.

The Open Inference Protocol addresses a model by name and an optional
version string; here versions are upstream's version numbers. A request
selects a signature with the `signature_name` parameter (upstream's field
name; `serving_default` without it), so every signature of a SavedModel is
reachable, not only one. The decoded request satisfies the pipeline's
PredictInputs: the codecs hand numpy to the one pipeline and nothing else.
"""

from __future__ import annotations

import dataclasses

from google.protobuf import wrappers_pb2
import numpy as np

from tensorflow_serving.apis import model_pb2
from tensorflow_serving.core import servable_state
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.model_servers import version as version_lib
from tensorflow_serving.model_servers.v2 import datatypes
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

# The pipeline's API label for v2 inference (request_latency, runtime_latency).
API_LABEL = "ModelInfer"
SIGNATURE_NAME = "signature_name"
# A signature the request names but the model lacks is a bad request
# (INVALID_ARGUMENT, worded as upstream's REST Predict words it).
SIGNATURE_API = signature_lib.Api.PREDICT_JSON
SERVER_NAME = "tensorflow_serving"
# Protocol extensions this server implements (GET /v2, ServerMetadata).
EXTENSIONS = ("binary_tensor_data", "model_repository")
_PLATFORMS = {"TF1": "tensorflow_savedmodel", "TFLite": "tensorflow_tflite"}
_INT64_MAX = 2**63 - 1


def server_version() -> str:
  return version_lib.SERVER_VERSION


def model_spec(name: str, version: str | None) -> model_pb2.ModelSpec:
  """A ModelSpec; "" or None asks for the latest version, as Triton's -1."""
  if not name:
    raise status.invalid_argument("model name must not be empty")
  spec = model_pb2.ModelSpec(name=name)
  if version and version != "-1":
    if not version.isdigit() or int(version) > _INT64_MAX:
      raise status.invalid_argument(
          f"model version must be a version number, got '{version}'"
      )
    spec.version.CopyFrom(wrappers_pb2.Int64Value(value=int(version)))
  return spec


@dataclasses.dataclass(slots=True)
class InferRequest:
  """A decoded inference request (the pipeline's PredictInputs)."""

  sig: signature_lib.Signature
  inputs: dict[str, np.ndarray]
  output_filter: tuple[str, ...]
  id: str = ""
  # Output name -> send it as binary data (REST) / raw contents (gRPC).
  binary: dict[str, bool] = dataclasses.field(default_factory=dict)
  binary_default: bool = False

  def wants_binary(self, name: str) -> bool:
    return self.binary.get(name, self.binary_default)


def check_input(sig: signature_lib.Signature, name: str, datatype: str) -> None:
  """A datatype the signature's input cannot take is the client's error.

  An input the signature lacks is left to the servable, which words it as
  upstream does for Predict.
  """
  spec = sig.inputs.get(name)
  if spec is None:
    return
  expected = datatypes.from_tf(spec.tf_dtype)
  if expected is not None and expected != datatype:
    raise status.invalid_argument(
        f"input '{name}' has datatype {datatype}, but signature "
        f"'{sig.key}' expects {expected}"
    )


def output_order(
    request: InferRequest, outputs: dict[str, np.ndarray]
) -> list[str]:
  """Requested outputs in request order, else all in signature order."""
  if request.output_filter:
    return [n for n in request.output_filter if n in outputs]
  return [n for n in request.sig.outputs if n in outputs] + [
      n for n in outputs if n not in request.sig.outputs
  ]


@dataclasses.dataclass(frozen=True)
class TensorMetadata:
  name: str
  datatype: str
  shape: list[int]


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
  name: str
  versions: list[str]
  platform: str
  inputs: list[TensorMetadata]
  outputs: list[TensorMetadata]


def _tensors(specs) -> list[TensorMetadata]:
  out = []
  for spec in specs.values():
    # Unknown rank has no v2 spelling: one dimension of unknown size.
    shape = [-1] if spec.shape is None else [int(d) for d in spec.shape]
    # A dtype the protocol cannot carry keeps TensorFlow's name (DT_...).
    datatype = datatypes.from_tf(spec.tf_dtype) or spec.dtype_name
    out.append(TensorMetadata(spec.alias, datatype, shape))
  return out


def model_metadata(
    core: server_core_lib.ServerCore,
    spec: model_pb2.ModelSpec,
    signature_name: str,
) -> ModelMetadata:
  """Metadata of one signature of the version `spec` resolves to.

  `versions` lists every AVAILABLE version of the model. Blocks briefly
  (takes a servable handle): call it off the event loop.
  """
  with core.get_servable_handle(spec) as handle:
    servable = handle.servable
    sig = signature_lib.resolve(
        servable.signatures, signature_name, signature_lib.Api.PREDICT_JSON
    )
    platform = _PLATFORMS.get(servable.runtime, servable.runtime)
  versions = available_versions(core, spec.name)
  return ModelMetadata(
      name=spec.name,
      versions=[str(v) for v in versions],
      platform=platform,
      inputs=_tensors(sig.inputs),
      outputs=_tensors(sig.outputs),
  )


def available_versions(
    core: server_core_lib.ServerCore, name: str
) -> list[int]:
  return sorted(
      version
      for version, entry in core.monitor.get_version_states(name).items()
      if entry.state.manager_state == servable_state.ManagerState.AVAILABLE
  )


def model_ready(
    core: server_core_lib.ServerCore, spec: model_pb2.ModelSpec
) -> bool:
  """Whether the version `spec` asks for (or any version) is AVAILABLE."""
  versions = available_versions(core, spec.name)
  if spec.WhichOneof("version_choice") == "version":
    return spec.version.value in versions
  return bool(versions)


def server_ready(core: server_core_lib.ServerCore) -> bool:
  """Every configured model has an AVAILABLE version (as /v1/health/ready)."""
  available = {sid.name for sid in core.manager.list_available_servable_ids()}
  return all(m.name in available for m in core.config.model_config_list.config)
