"""The Open Inference Protocol conformance table: request forms and answers.

Each case is one request form from the protocol's spec (KServe's Open
Inference Protocol) or one of its extensions (binary tensor data, model
repository), sent to the real server; the row holds the answer the spec
(and Triton, its reference implementation, for status codes) calls for,
summarised, and ours, summarised the same way. v2_conformance_test runs
every case and writes the table; docs/v2_conformance.md is that table, and
v2_conformance_table_test checks the committed page equals what this
module renders. Regenerate the page with
  python -m tensorflow_serving.model_servers.api_test.v2_conformance
(it prints the rows as the spec expects them, which the test asserts are
the answers the server gives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import json
from typing import Any

import numpy as np

HALF = "half"
STRINGS = "strings"
DTYPES = "dtypes"
EXTRA = "extra"
# Where the table is committed (relative to the repository root).
DOC_PATH = "docs/v2_conformance.md"
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclasses.dataclass(frozen=True)
class Rest:
  method: str
  path: str
  body: bytes = b""
  headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Grpc:
  method: str
  # Builds the request from tritonclient.grpc.service_pb2.
  build: Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Case:
  area: str
  form: str  # The request form, as the table shows it.
  request: Rest | Grpc
  expected: str  # The answer, summarised (see summarize_rest/summarize_grpc).


def _infer_doc(*inputs, **extra) -> bytes:
  return json.dumps({"inputs": list(inputs), **extra}).encode()


def _x(data, datatype="FP32", shape=None, name="x"):
  return {
      "name": name,
      "datatype": datatype,
      "shape": shape if shape is not None else [len(data)],
      "data": data,
  }


def _binary(header: dict, data: bytes, model: str = HALF) -> Rest:
  text = json.dumps(header).encode()
  return Rest(
      "POST",
      f"/v2/models/{model}/infer",
      text + data,
      ((HEADER_LENGTH, str(len(text))),),
  )


_F32_1_2_3 = np.array([1, 2, 3], "<f4").tobytes()
_INFER = f"/v2/models/{HALF}/infer"

# JSON data of each datatype's sample, and the signature that echoes it.
_DATATYPE_SAMPLES = (
    ("BOOL", "bool", [[True, False]]),
    ("INT8", "int8", [[-128, 127]]),
    ("INT16", "int16", [[-32768, 32767]]),
    ("INT32", "int32", [[-2147483648, 2147483647]]),
    ("INT64", "int64", [[-9223372036854775808, 9223372036854775807]]),
    ("UINT8", "uint8", [[0, 255]]),
    ("UINT16", "uint16", [[0, 65535]]),
    ("UINT32", "uint32", [[0, 4294967295]]),
    ("UINT64", "uint64", [[0, 18446744073709551615]]),
    ("FP16", "half", [[0.5, -2.0]]),
    ("FP32", "float", [[0.5, -2.0]]),
    ("FP64", "double", [[0.5, -2.0]]),
    ("BYTES", "string", [["a", "é"]]),
)


def _datatype_cases() -> list[Case]:
  cases = []
  for datatype, signature, data in _DATATYPE_SAMPLES:
    body = _infer_doc(
        _x(data, datatype, [1, 2]),
        parameters={"signature_name": signature},
    )
    flat = json.dumps(data[0], ensure_ascii=False)
    cases.append(
        Case(
            "Inference (JSON)",
            f"{datatype} tensor, signature_name {signature}",
            Rest("POST", f"/v2/models/{DTYPES}/infer", body),
            f"200 y {datatype} [1, 2] {flat}",
        )
    )
  return cases


def _grpc_infer(typed: bool):
  def build(pb):
    request = pb.ModelInferRequest(model_name=HALF)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[3])
    if typed:
      tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0])
    else:
      request.raw_input_contents.append(_F32_1_2_3)
    return request

  return build


def _grpc_wrong_datatype(pb):
  request = pb.ModelInferRequest(model_name=HALF)
  tensor = request.inputs.add(name="x", datatype="FP64", shape=[1])
  tensor.contents.fp64_contents.append(1.0)
  return request


def _grpc_unknown_model(pb):
  request = _grpc_infer(True)(pb)
  request.model_name = "unknown"
  return request


def _grpc_load(pb):
  request = pb.RepositoryModelLoadRequest(model_name=EXTRA)
  request.parameters["config"].string_param = json.dumps(
      {"base_path": "$EXTRA_BASE_PATH"}
  )
  return request


def cases() -> list[Case]:
  """Every request form, in the order they run (repository rows last)."""
  ok = "200"
  half_meta = (
      "200 half platform=tensorflow_savedmodel versions=[1] "
      "inputs=[x FP32 [-1]] outputs=[y FP32 [-1]]"
  )
  y_123 = "200 y FP32 [3] [2.5, 3.0, 3.5]"
  return [
      Case(
          "Health",
          "GET /v2/health/live",
          Rest("GET", "/v2/health/live"),
          "200 live=true",
      ),
      Case(
          "Health",
          "GET /v2/health/ready",
          Rest("GET", "/v2/health/ready"),
          "200 ready=true",
      ),
      Case(
          "Server metadata",
          "GET /v2",
          Rest("GET", "/v2"),
          "200 tensorflow_serving extensions=[binary_tensor_data, "
          "model_repository]",
      ),
      Case(
          "Model metadata",
          "GET /v2/models/{m}",
          Rest("GET", f"/v2/models/{HALF}"),
          half_meta,
      ),
      Case(
          "Model metadata",
          "GET /v2/models/{m}/versions/{v}",
          Rest("GET", f"/v2/models/{HALF}/versions/1"),
          half_meta,
      ),
      Case(
          "Model metadata",
          "GET /v2/models/{m}?signature_name=echo_bytes",
          Rest("GET", f"/v2/models/{STRINGS}?signature_name=echo_bytes"),
          "200 strings platform=tensorflow_savedmodel versions=[1] "
          "inputs=[data BYTES [-1]] outputs=[data_bytes BYTES [-1], "
          "size INT32 [-1]]",
      ),
      Case(
          "Model metadata",
          "GET /v2/models/{unknown}",
          Rest("GET", "/v2/models/unknown"),
          "404 error",
      ),
      Case(
          "Model ready",
          "GET /v2/models/{m}/ready",
          Rest("GET", f"/v2/models/{HALF}/ready"),
          ok,
      ),
      Case(
          "Model ready",
          "GET /v2/models/{m}/versions/{v}/ready",
          Rest("GET", f"/v2/models/{HALF}/versions/1/ready"),
          ok,
      ),
      Case(
          "Model ready",
          "GET /v2/models/{m}/versions/{missing}/ready",
          Rest("GET", f"/v2/models/{HALF}/versions/7/ready"),
          "400",
      ),
      Case(
          "Model ready",
          "GET /v2/models/{unknown}/ready",
          Rest("GET", "/v2/models/unknown/ready"),
          "400",
      ),
      Case(
          "Inference (JSON)",
          "flat data",
          Rest("POST", _INFER, _infer_doc(_x([1, 2, 3]))),
          y_123,
      ),
      Case(
          "Inference (JSON)",
          "nested data, shape [2, 2]",
          Rest("POST", _INFER, _infer_doc(_x([[1, 2], [3, 4]], shape=[2, 2]))),
          "200 y FP32 [2, 2] [2.5, 3.0, 3.5, 4.0]",
      ),
      Case(
          "Inference (JSON)",
          "request id",
          Rest("POST", _INFER, _infer_doc(_x([1, 2, 3]), id="r1")),
          "200 id=r1; y FP32 [3] [2.5, 3.0, 3.5]",
      ),
      Case(
          "Inference (JSON)",
          "requested outputs",
          Rest(
              "POST",
              f"/v2/models/{STRINGS}/infer",
              _infer_doc(
                  _x(["abc"], "BYTES", name="data"),
                  parameters={"signature_name": "echo_bytes"},
                  outputs=[{"name": "size"}],
              ),
          ),
          "200 size INT32 [1] [3]",
      ),
      Case(
          "Inference (JSON)",
          "POST /v2/models/{m}/versions/{v}/infer",
          Rest(
              "POST",
              f"/v2/models/{HALF}/versions/1/infer",
              _infer_doc(_x([1, 2, 3])),
          ),
          y_123,
      ),
      Case(
          "Inference (JSON)",
          "unknown parameters pass",
          Rest(
              "POST",
              _INFER,
              _infer_doc(_x([1, 2, 3]), parameters={"priority": 1}),
          ),
          y_123,
      ),
      *_datatype_cases(),
      Case(
          "Binary data",
          "binary input (binary_data_size)",
          _binary(
              {
                  "inputs": [
                      {
                          "name": "x",
                          "datatype": "FP32",
                          "shape": [3],
                          "parameters": {"binary_data_size": 12},
                      }
                  ]
              },
              _F32_1_2_3,
          ),
          y_123,
      ),
      Case(
          "Binary data",
          "binary_data_output: true",
          Rest(
              "POST",
              _INFER,
              _infer_doc(
                  _x([1, 2, 3]), parameters={"binary_data_output": True}
              ),
          ),
          "200 y FP32 [3] binary(12) [2.5, 3.0, 3.5]",
      ),
      Case(
          "Binary data",
          "output binary_data: true",
          Rest(
              "POST",
              _INFER,
              _infer_doc(
                  _x([1, 2, 3]),
                  outputs=[{"name": "y", "parameters": {"binary_data": True}}],
              ),
          ),
          "200 y FP32 [3] binary(12) [2.5, 3.0, 3.5]",
      ),
      Case(
          "Binary data",
          "BYTES in and out",
          _binary(
              {
                  "parameters": {
                      "signature_name": "echo_bytes",
                      "binary_data_output": True,
                  },
                  "inputs": [
                      {
                          "name": "data",
                          "datatype": "BYTES",
                          "shape": [1],
                          "parameters": {"binary_data_size": 6},
                      }
                  ],
                  "outputs": [{"name": "data_bytes"}],
              },
              b"\x02\x00\x00\x00\xff\x00",
              STRINGS,
          ),
          "200 data_bytes BYTES [1] binary(6) [b'\\xff\\x00']",
      ),
      Case(
          "Errors",
          "unknown model",
          Rest("POST", "/v2/models/unknown/infer", _infer_doc(_x([1]))),
          "404 error",
      ),
      Case(
          "Errors",
          "datatype the signature does not take",
          Rest("POST", _INFER, _infer_doc(_x([1], "FP64"))),
          "400 error",
      ),
      Case(
          "Errors",
          "shape and data disagree",
          Rest("POST", _INFER, _infer_doc(_x([1, 2], shape=[3]))),
          "400 error",
      ),
      Case(
          "Errors",
          "unknown input",
          Rest("POST", _INFER, _infer_doc(_x([1], name="z"))),
          "400 error",
      ),
      Case(
          "Errors",
          "unknown signature_name",
          Rest(
              "POST",
              _INFER,
              _infer_doc(_x([1]), parameters={"signature_name": "nope"}),
          ),
          "400 error",
      ),
      Case(
          "Errors",
          "body is not JSON",
          Rest("POST", _INFER, b"{not json"),
          "400 error",
      ),
      Case(
          "Errors",
          "binary_data_size past the body",
          _binary(
              {
                  "inputs": [
                      {
                          "name": "x",
                          "datatype": "FP32",
                          "shape": [3],
                          "parameters": {"binary_data_size": 12},
                      }
                  ]
              },
              b"\x00" * 4,
          ),
          "400 error",
      ),
      Case(
          "Errors",
          "GET on .../infer",
          Rest("GET", _INFER),
          "400 error",
      ),
      Case(
          "Errors",
          "endpoint not served (GET /v2/models/{m}/config)",
          Rest("GET", f"/v2/models/{HALF}/config"),
          "404 error",
      ),
      Case(
          "Repository",
          "POST /v2/repository/index",
          Rest("POST", "/v2/repository/index"),
          "200 [dtypes 1 READY, half 1 READY, strings 1 READY]",
      ),
      Case(
          "Repository",
          "POST /v2/repository/models/{m}/load with config",
          Rest(
              "POST",
              f"/v2/repository/models/{EXTRA}/load",
              json.dumps(
                  {"parameters": {"config": {"base_path": "$EXTRA_BASE_PATH"}}}
              ).encode(),
          ),
          ok,
      ),
      Case(
          "Repository",
          'POST /v2/repository/index {"ready": true}',
          Rest("POST", "/v2/repository/index", b'{"ready": true}'),
          "200 [dtypes 1 READY, extra 1 READY, half 1 READY, strings 1 READY]",
      ),
      Case(
          "Repository",
          "POST /v2/repository/models/{m}/unload",
          Rest("POST", f"/v2/repository/models/{EXTRA}/unload"),
          ok,
      ),
      Case(
          "Repository",
          "load of an unknown model without config",
          Rest("POST", "/v2/repository/models/unknown/load"),
          "400 error",
      ),
      Case(
          "Repository",
          "unload of a model not served",
          Rest("POST", "/v2/repository/models/unknown/unload"),
          "404 error",
      ),
      Case(
          "gRPC",
          "ServerLive",
          Grpc("ServerLive", lambda pb: pb.ServerLiveRequest()),
          "live=True",
      ),
      Case(
          "gRPC",
          "ServerReady",
          Grpc("ServerReady", lambda pb: pb.ServerReadyRequest()),
          "ready=True",
      ),
      Case(
          "gRPC",
          "ModelReady",
          Grpc("ModelReady", lambda pb: pb.ModelReadyRequest(name=HALF)),
          "ready=True",
      ),
      Case(
          "gRPC",
          "ServerMetadata",
          Grpc("ServerMetadata", lambda pb: pb.ServerMetadataRequest()),
          "tensorflow_serving extensions=[binary_tensor_data, model_repository]",
      ),
      Case(
          "gRPC",
          "ModelMetadata",
          Grpc(
              "ModelMetadata",
              lambda pb: pb.ModelMetadataRequest(name=HALF, version="1"),
          ),
          "half platform=tensorflow_savedmodel versions=[1] "
          "inputs=[x FP32 [-1]] outputs=[y FP32 [-1]]",
      ),
      Case(
          "gRPC",
          "ModelInfer, typed contents",
          Grpc("ModelInfer", _grpc_infer(True)),
          "contents y FP32 [3] [2.5, 3.0, 3.5]",
      ),
      Case(
          "gRPC",
          "ModelInfer, raw_input_contents",
          Grpc("ModelInfer", _grpc_infer(False)),
          "raw y FP32 [3] [2.5, 3.0, 3.5]",
      ),
      Case(
          "gRPC",
          "ModelInfer, unknown model",
          Grpc("ModelInfer", _grpc_unknown_model),
          "NOT_FOUND",
      ),
      Case(
          "gRPC",
          "ModelInfer, wrong datatype",
          Grpc("ModelInfer", _grpc_wrong_datatype),
          "INVALID_ARGUMENT",
      ),
      Case(
          "gRPC",
          "RepositoryIndex (ready)",
          Grpc(
              "RepositoryIndex",
              lambda pb: pb.RepositoryIndexRequest(ready=True),
          ),
          "[dtypes 1 READY, half 1 READY, strings 1 READY]",
      ),
      Case(
          "gRPC",
          "RepositoryModelLoad",
          Grpc("RepositoryModelLoad", _grpc_load),
          "OK",
      ),
      Case(
          "gRPC",
          "RepositoryModelUnload",
          Grpc(
              "RepositoryModelUnload",
              lambda pb: pb.RepositoryModelUnloadRequest(model_name=EXTRA),
          ),
          "OK",
      ),
  ]


# --- Summaries (the same for the expected answer and ours) --------------------


def _data_text(values: Sequence[Any]) -> str:
  return json.dumps(list(values), ensure_ascii=False)


def _tensor_summary(name, datatype, shape, data_text) -> str:
  return f"{name} {datatype} {list(shape)} {data_text}"


def _split_binary(headers: dict[str, str], body: bytes) -> tuple[dict, bytes]:
  length = headers.get(HEADER_LENGTH.lower())
  if length is None:
    return json.loads(body), b""
  return json.loads(body[: int(length)]), body[int(length) :]


def _binary_values(datatype: str, blob: bytes) -> str:
  if datatype == "BYTES":
    items, offset = [], 0
    while offset < len(blob):
      size = int.from_bytes(blob[offset : offset + 4], "little")
      items.append(blob[offset + 4 : offset + 4 + size])
      offset += 4 + size
    return "[" + ", ".join(repr(i) for i in items) + "]"
  dtype = {"FP32": "<f4", "INT32": "<i4", "FP64": "<f8"}[datatype]
  return _data_text(np.frombuffer(blob, dtype).tolist())


def summarize_rest(status: int, headers: dict[str, str], body: bytes) -> str:
  """`<status>` plus what the answer holds that the spec specifies."""
  if not body:
    return str(status)
  doc, blob = _split_binary(headers, body)
  if isinstance(doc, dict) and set(doc) == {"error"}:
    return f"{status} error"
  if isinstance(doc, dict) and set(doc) in ({"live"}, {"ready"}):
    ((key, value),) = doc.items()
    return f"{status} {key}={json.dumps(value)}"
  if isinstance(doc, list):
    return (
        f"{status} ["
        + ", ".join(f"{m['name']} {m['version']} {m['state']}" for m in doc)
        + "]"
    )
  if "extensions" in doc:
    return f"{status} {doc['name']} extensions=[{', '.join(doc['extensions'])}]"
  if "platform" in doc:
    return f"{status} " + _metadata_text(
        doc["name"],
        doc["platform"],
        doc["versions"],
        [(t["name"], t["datatype"], t["shape"]) for t in doc["inputs"]],
        [(t["name"], t["datatype"], t["shape"]) for t in doc["outputs"]],
    )
  parts = []
  if "id" in doc:
    parts.append(f"id={doc['id']}")
  offset = 0
  for out in doc["outputs"]:
    size = out.get("parameters", {}).get("binary_data_size")
    if size is None:
      data = _data_text(out["data"])
    else:
      data = f"binary({size}) " + _binary_values(
          out["datatype"], blob[offset : offset + size]
      )
      offset += size
    parts.append(
        _tensor_summary(out["name"], out["datatype"], out["shape"], data)
    )
  return f"{status} " + "; ".join(parts)


def _metadata_text(name, platform, versions, inputs, outputs) -> str:
  def tensors(items):
    return ", ".join(f"{n} {d} {list(s)}" for n, d, s in items)

  return (
      f"{name} platform={platform} versions=[{', '.join(versions)}] "
      f"inputs=[{tensors(inputs)}] outputs=[{tensors(outputs)}]"
  )


def summarize_grpc(method: str, response: Any) -> str:
  if method in ("ServerLive",):
    return f"live={response.live}"
  if method in ("ServerReady", "ModelReady"):
    return f"ready={response.ready}"
  if method == "ServerMetadata":
    return f"{response.name} extensions=[{', '.join(response.extensions)}]"
  if method == "ModelMetadata":
    return _metadata_text(
        response.name,
        response.platform,
        list(response.versions),
        [(t.name, t.datatype, t.shape) for t in response.inputs],
        [(t.name, t.datatype, t.shape) for t in response.outputs],
    )
  if method == "ModelInfer":
    parts = []
    for i, out in enumerate(response.outputs):
      if response.raw_output_contents:
        kind = "raw"
        values = np.frombuffer(response.raw_output_contents[i], "<f4").tolist()
      else:
        kind = "contents"
        values = list(out.contents.fp32_contents)
      parts.append(
          kind
          + " "
          + _tensor_summary(
              out.name, out.datatype, out.shape, _data_text(values)
          )
      )
    return "; ".join(parts)
  if method == "RepositoryIndex":
    return (
        "["
        + ", ".join(f"{m.name} {m.version} {m.state}" for m in response.models)
        + "]"
    )
  return "OK"


# --- The table ----------------------------------------------------------------


def render(rows: Sequence[tuple[Case, str]]) -> str:
  """The page: one row per case, the spec's answer and ours."""
  lines = [
      "# Open Inference Protocol (v2) conformance",
      "",
      "Generated by `//tensorflow_serving/model_servers/api_test:"
      "v2_conformance_test`,",
      "which sends each request form of the protocol and its binary data and",
      "model repository extensions to the real server (models `half`,",
      "`strings` and `dtypes` of `api_test/test_models.py`) and fails unless",
      "our answer is the one the protocol calls for (HTTP codes as Triton",
      "gives them); `v2_conformance_table_test` checks this page. Answers are",
      "summarised: the HTTP status or gRPC code, then what the protocol fixes",
      "(names, datatypes, shapes, data; `binary(n)`: n bytes of binary data).",
      "See [v2_protocol.md](v2_protocol.md).",
      "",
      "| # | Area | Request | Spec | Ours |",
      "|---|------|---------|------|------|",
  ]
  for i, (case, ours) in enumerate(rows, 1):
    lines.append(
        f"| {i} | {case.area} | {_cell(case.form)} | {_cell(case.expected)} "
        f"| {_cell(ours)} |"
    )
  return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
  return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def expected_page() -> str:
  return render([(case, case.expected) for case in cases()])


if __name__ == "__main__":
  print(expected_page(), end="")
