"""Drives a server with KServe's own Python clients; prints what they got.

Runs under KServe's venv (tools/kserve_client: its protobuf<7 pin excludes
this project's), so it imports nothing from tf_serving. kserve_client_test
starts the server, runs this script and judges the JSON it prints, one
object per line: {"check": name, "value": ...} or {"check": name,
"error": type, "message": ...} when the client raised.
"""

import argparse
import asyncio
import json

import kserve
import numpy as np


def _emit(name, value=None, error=None):
  record = {"check": name}
  if error is None:
    record["value"] = value
  else:
    record["error"] = type(error).__name__
    record["message"] = str(error)
  print(json.dumps(record), flush=True)


async def _check(name, coroutine, convert=lambda v: v):
  try:
    _emit(name, convert(await coroutine))
  except Exception as exc:  # pylint: disable=broad-except
    _emit(name, error=exc)


def _half_request(values, request_id, binary=None):
  tensor = kserve.InferInput(name="x", shape=[len(values)], datatype="FP32")
  array = np.array(values, dtype=np.float32)
  if binary is None:
    tensor.set_data_from_numpy(array)
  else:
    tensor.set_data_from_numpy(array, binary_data=binary)
  return kserve.InferRequest(
      model_name="half", infer_inputs=[tensor], request_id=request_id
  )


def _bytes_request(items):
  tensor = kserve.InferInput(name="data", shape=[len(items)], datatype="BYTES")
  tensor.set_data_from_numpy(np.array(items, dtype=np.object_))
  return kserve.InferRequest(
      model_name="strings",
      infer_inputs=[tensor],
      parameters={"signature_name": "echo_bytes"},
  )


def _outputs(response):
  return {
      "id": response.id,
      "outputs": {
          out.name: [
              v.decode("latin-1") if isinstance(v, bytes) else v
              for v in out.as_numpy().ravel().tolist()
          ]
          for out in response.outputs
      },
  }


async def main(rest_url: str, grpc_target: str) -> None:
  rest = kserve.InferenceRESTClient(
      kserve.RESTConfig(protocol="v2", timeout=30, retries=0)
  )
  await _check("rest live", rest.is_server_live(rest_url))
  await _check("rest ready", rest.is_server_ready(rest_url))
  await _check("rest model ready", rest.is_model_ready(rest_url, "half"))
  await _check(
      "rest model ready unknown", rest.is_model_ready(rest_url, "unknown")
  )
  for name, binary in (("rest infer json", False), ("rest infer binary", True)):
    await _check(
        name,
        rest.infer(
            rest_url,
            _half_request([1.0, 2.0, 3.0], "r1", binary),
            model_name="half",
        ),
        _outputs,
    )
  await _check(
      "rest infer bytes",
      rest.infer(
          rest_url, _bytes_request([b"ab", b"xyz"]), model_name="strings"
      ),
      _outputs,
  )
  unknown = _half_request([1.0], "r2")
  unknown.model_name = "unknown"
  await _check(
      "rest infer unknown model",
      rest.infer(rest_url, unknown, model_name="unknown"),
      _outputs,
  )
  await rest.close()

  grpc_client = kserve.InferenceGRPCClient(grpc_target, timeout=30, retries=0)
  await _check("grpc live", grpc_client.is_server_live())
  await _check("grpc ready", grpc_client.is_server_ready())
  await _check("grpc model ready", grpc_client.is_model_ready("half"))
  await _check(
      "grpc infer",
      grpc_client.infer(_half_request([1.0, 2.0, 3.0], "g1")),
      _outputs,
  )
  await _check(
      "grpc infer bytes",
      grpc_client.infer(_bytes_request([b"ab", b"xyz"])),
      _outputs,
  )
  unknown = _half_request([1.0], "g2")
  unknown.model_name = "unknown"
  await _check("grpc infer unknown model", grpc_client.infer(unknown), _outputs)
  await grpc_client.close()


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--rest_url", required=True)
  parser.add_argument("--grpc_target", required=True)
  args = parser.parse_args()
  asyncio.run(main(args.rest_url, args.grpc_target))
