"""One request pipeline for every API, shared by the gRPC and REST transports.

Each request goes through the same layers, one function each:

    resolve servable (ServerCore handle)
      -> resolve signature (signature.resolve, upstream's message per API)
      -> run (ModelRunner: a batch, or a worker thread)
      -> record metrics (here, once)
      -> request log (here, once; sampled, queued, written off the request)

A transport only decodes its request into numpy and encodes the result
(grpc_services.py: protos, http_rest_api_handler.py: JSON). Decoding happens
inside the pipeline through a callback that is handed the signature lookup,
as upstream's REST handler hands FillPredictRequestFromJson a callback for
the signature's input map: REST must parse the body before it knows the
signature, gRPC resolves the signature before it parses tensors, and either
way the servable handle is taken on the first lookup and held until the
result is ready. Upstream's `ProcessPredictRequest` and Seldon MLServer's
`handlers/dataplane.py` are the models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import time
from typing import Any, Generic, Protocol, TypeVar

from absl import logging
import numpy as np

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.model_servers import control_plane
from tensorflow_serving.model_servers import get_model_metadata_impl
from tensorflow_serving.model_servers import model_runner as model_runner_lib
from tensorflow_serving.model_servers import model_view
from tensorflow_serving.model_servers import prediction_logs
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.servables.tensorflow import classifier
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.servables.tensorflow import multi_inference
from tensorflow_serving.servables.tensorflow import regressor
from tensorflow_serving.servables.tensorflow import servable as servable_lib
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

Api = signature_lib.Api
Signature = signature_lib.Signature
SignatureLookup = Callable[[str], Signature]

GRPC = "GRPC"
REST = "REST"


class PredictInputs(Protocol):
  """What a transport's Predict decoder yields: numpy in, and what to fetch."""

  @property
  def sig(self) -> Signature:
    ...

  @property
  def inputs(self) -> Mapping[str, np.ndarray]:
    ...

  @property
  def output_filter(self) -> Sequence[str]:
    ...


D = TypeVar("D", bound=PredictInputs)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Predicted(Generic[D]):
  """A Predict's result: the version that served it, and its outputs."""

  id: servable_id_lib.ServableId
  request: D  # What the transport decoded (it may need it to encode).
  outputs: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True, slots=True)
class Classified:
  id: servable_id_lib.ServableId
  sig: Signature
  classifications: classifier.Classifications


@dataclasses.dataclass(frozen=True, slots=True)
class Regressed:
  id: servable_id_lib.ServableId
  sig: Signature
  values: np.ndarray  # float32 [N]


class _Request:
  """One request: its servable handle, taken on the first signature lookup,
  and its metrics, recorded once when the `with` block ends.

  A class with slots rather than a context-manager generator: it runs once
  per request, and generator machinery cost ~5% of a batched gRPC Predict.
  """

  __slots__ = (
      "_api",
      "_core",
      "_entrypoint",
      "_handle",
      "_label",
      "_sig_key",
      "_spec",
      "_start",
      "servable",
      "trace",
  )

  def __init__(
      self,
      core: server_core_lib.ServerCore,
      spec: model_pb2.ModelSpec,
      api: Api,
      label: str,
      entrypoint: str,
      trace: Any = None,
  ):
    self._core = core
    self.trace = trace  # A tracing.RequestTrace when this request is traced.
    self._spec = spec
    self._api = api
    self._label = label  # Upstream's API label: Predict, Classify, Regress.
    self._entrypoint = entrypoint
    self._handle: Any = None
    self.servable: Any = None
    self._sig_key = ""
    self._start = time.perf_counter()

  def __enter__(self) -> _Request:
    return self

  def __exit__(self, exc_type, exc, traceback) -> None:
    version = ""
    if self._handle is not None:
      version = str(self._handle.id.version)
      self._handle.__exit__(None, None, None)
      self._handle = None
    code = "OK" if exc is None else _code_name(exc)
    metrics.record_request(
        self._spec.name,
        self._label,
        self._entrypoint,
        code,
        self._start,
        version,
        self._sig_key,
    )

  def acquire(self) -> servable_lib.Servable:
    if self._handle is None:
      handle = self._core.get_servable_handle(self._spec)
      self._handle = handle.__enter__()
      self.servable = handle.servable
    return self.servable

  def signature(self, name: str) -> Signature:
    sig = signature_lib.resolve(self.acquire().signatures, name, self._api)
    self._sig_key = sig.key
    return sig

  @property
  def id(self) -> servable_id_lib.ServableId:
    return self._handle.id

  @property
  def label(self) -> str:
    return self._label


ExamplesDecoder = Callable[[SignatureLookup], tuple[Signature, np.ndarray]]


class Pipeline:
  """The transport-free steps of every model API, over one ServerCore."""

  def __init__(
      self,
      core: server_core_lib.ServerCore,
      runner: model_runner_lib.ModelRunner,
      control: control_plane.ControlPlane | None = None,
      models: model_view.ModelView | None = None,
  ):
    self.core = core
    self.runner = runner
    # Reloads: ModelService's, beside (not in) this pipeline.
    self.control = control or control_plane.ControlPlane(core)
    # Every read of model state a client sees (status, listing, readiness,
    # the status page): under --num_workers, every worker's.
    self.models = models or model_view.ModelView(core)
    # Set by the server when --otlp_traces_endpoint is (tracing.Tracing).
    self.tracing: Any = None
    # Its `by_model` is empty unless some model has a logging_config.
    self._logs = core.request_logger

  def get_model_metadata(
      self, request: get_model_metadata_pb2.GetModelMetadataRequest
  ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata; takes a servable handle (call it off the loop)."""
    return get_model_metadata_impl.get_model_metadata(self.core, request)

  async def predict(
      self,
      spec: model_pb2.ModelSpec,
      decode: Callable[[SignatureLookup], D],
      entrypoint: str,
      off_loop: bool = False,
      label: str = "Predict",
      api: Api = Api.PREDICT,
      trace: Any = None,
      deadline: float | None = None,
  ) -> Predicted[D]:
    """Decodes through `decode(lookup)`, runs, and records the metrics.

    `off_loop` decodes on a worker thread (a body too large to parse on the
    event loop without stalling every other connection). `label` is the
    metrics' API label: upstream's `Predict`, or another protocol's name
    for the same run (the Open Inference Protocol's `ModelInfer`). `api`
    words a missing signature: each transport passes its own (upstream's
    REST handler, which looks the signature up to decode its body, words
    it as `Api.PREDICT_JSON`). `deadline` (time.monotonic's clock) lets a
    run that cannot finish in time be refused before it queues
    (admission.py).
    """
    with _Request(self.core, spec, api, label, entrypoint, trace) as request:
      self.runner.admission.check(deadline)  # Refusing needs no decoding.
      decoded = await self._decode(decode, request, off_loop)
      outputs = await self._run(
          request,
          decoded.sig,
          decoded.inputs,
          decoded.output_filter,
          deadline,
      )
      if self._logs.by_model:
        self._logs.log(
            spec.name,
            lambda: prediction_logs.PredictEntry(
                request.id,
                spec,
                decoded.sig.key,
                decoded.inputs,
                decoded.output_filter,
                outputs,
            ),
        )
      return Predicted(request.id, decoded, outputs)

  async def classify(
      self,
      spec: model_pb2.ModelSpec,
      decode: ExamplesDecoder,
      entrypoint: str,
      off_loop: bool = False,
      trace: Any = None,
      deadline: float | None = None,
  ) -> Classified:
    """`decode(lookup)` gives the signature and the serialized Examples."""
    with _Request(
        self.core, spec, Api.CLASSIFY, "Classify", entrypoint, trace
    ) as request:
      sig, examples, outputs = await self._run_examples(
          request,
          decode,
          off_loop,
          classifier.prepare_classification,
          deadline,
      )
      classes = classifier.classifications_from_outputs(len(examples), outputs)
      if self._logs.by_model:
        self._logs.log(
            spec.name,
            lambda: prediction_logs.ClassifyEntry(
                request.id, spec, sig.key, examples, classes
            ),
        )
      return Classified(request.id, sig, classes)

  async def regress(
      self,
      spec: model_pb2.ModelSpec,
      decode: ExamplesDecoder,
      entrypoint: str,
      off_loop: bool = False,
      trace: Any = None,
      deadline: float | None = None,
  ) -> Regressed:
    """`decode(lookup)` gives the signature and the serialized Examples."""
    with _Request(
        self.core, spec, Api.REGRESS, "Regress", entrypoint, trace
    ) as request:
      sig, examples, outputs = await self._run_examples(
          request,
          decode,
          off_loop,
          regressor.prepare_regression,
          deadline,
      )
      values = regressor.values_from_outputs(len(examples), outputs)
      if self._logs.by_model:
        self._logs.log(
            spec.name,
            lambda: prediction_logs.RegressEntry(
                request.id, spec, sig.key, examples, values
            ),
        )
      return Regressed(request.id, sig, values)

  async def multi_inference(
      self, request: inference_pb2.MultiInferenceRequest
  ) -> inference_pb2.MultiInferenceResponse:
    """As upstream, the FIRST task's ModelSpec picks the servable.

    The other tasks must name the same model (checked by
    `run_multi_inference`). Upstream records no request metrics for it.
    """
    # Checked before resolving, or an empty request would only report the
    # (default) first ModelSpec's missing name.
    if not request.tasks:
      raise status.invalid_argument(multi_inference.NO_TASKS_MESSAGE)
    response = inference_pb2.MultiInferenceResponse()
    spec = request.tasks[0].model_spec
    with self.core.get_servable_handle(spec) as handle:
      await self.runner.call(
          multi_inference.run_multi_inference,
          handle.servable,
          request,
          response,
          handle.id.version,
      )
      served = handle.id
    if self._logs.by_model:
      self._logs.log(
          spec.name,
          lambda: prediction_logs.MultiInferenceEntry(
              served, request, response
          ),
      )
    metrics.record_example_count(spec.name, _num_examples(request.input))
    return response

  async def _decode(
      self,
      decode: Callable[[SignatureLookup], T],
      request: _Request,
      off_loop: bool,
  ) -> T:
    trace = request.trace
    if trace is not None:
      start = time.time_ns()
      try:
        if off_loop:
          return await self.runner.call(decode, request.signature)
        return decode(request.signature)
      finally:
        trace.child("decode", start, time.time_ns())
    if off_loop:
      return await self.runner.call(decode, request.signature)
    return decode(request.signature)

  async def _run_examples(
      self,
      request: _Request,
      decode: ExamplesDecoder,
      off_loop: bool,
      prepare: Callable[[Signature], example_input.ExampleSignature],
      deadline: float | None,
  ) -> tuple[Signature, np.ndarray, dict[str, np.ndarray]]:
    """Classify's and Regress's shared steps: decode, check, count, run."""
    self.runner.admission.check(deadline)
    sig, examples = await self._decode(decode, request, off_loop)
    prepared = prepare(sig)
    metrics.record_example_count(request.id.name, len(examples))
    outputs = await self._run(
        request,
        prepared.sig,
        {prepared.input_alias: examples},
        prepared.output_aliases,
        deadline,
    )
    return sig, examples, outputs

  async def _run(
      self,
      request: _Request,
      sig: Signature,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str],
      deadline: float | None,
  ) -> dict[str, np.ndarray]:
    """The run itself, timed as upstream's runtime_latency (queueing too)."""
    servable = request.acquire()
    start = time.perf_counter()
    trace = request.trace
    if trace is not None:
      started = time.time_ns()
      outputs = await self.runner.run(
          servable, sig, inputs, output_filter, trace, deadline
      )
      trace.child("run", started, time.time_ns())
      trace.served(request.id.name, request.id.version, sig.key)
    else:
      outputs = await self.runner.run(
          servable, sig, inputs, output_filter, deadline=deadline
      )
    metrics.record_runtime_latency(
        request.id.name,
        request.label,
        servable.runtime,
        metrics.elapsed_us(start),
    )
    return outputs


def _code_name(exc: BaseException) -> str:
  if isinstance(exc, status.ServingError):
    return exc.code.name
  if isinstance(exc, Exception):
    logging.exception("Unexpected error in a request")
    return "INTERNAL"
  return "CANCELLED"  # The call's deadline or the client ended it.


def _num_examples(request_input: Any) -> int:
  kind = request_input.WhichOneof("kind")
  if kind is None:
    return 0
  return len(getattr(request_input, kind).examples)
