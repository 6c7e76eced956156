"""The REST handler in process: routes, JSON decode/encode, upstream's errors."""

from __future__ import annotations

import gc
import json
import time
import weakref

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.model_servers import http_rest_api_handler
from tensorflow_serving.test_util import in_process
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status as status_lib

State = get_model_status_pb2.ModelVersionStatus.State


class HttpRestApiHandlerTest(in_process.HalfPlusTwoTestCase):

  def setUp(self):
    super().setUp()
    self.core = in_process.FakeCore(
        {"half": (7, self.bundle), "ex": (3, self.examples)}
    )
    self.handler = http_rest_api_handler.HttpRestApiHandler(
        in_process.make_pipeline(self.core)
    )

  def request(self, method, path, body=b""):
    if not isinstance(body, bytes):
      body = json.dumps(body).encode()
    response = in_process.run(self.handler.handle(method, path, body))
    return response.status, json.loads(response.body)

  def test_predict_row_and_columnar(self):
    self.assertEqual(
        self.request(
            "POST", "/v1/models/half:predict", {"instances": [1.0, 2.0]}
        ),
        (200, {"predictions": [2.5, 3.0]}),
    )
    self.assertEqual(
        self.request("POST", "/v1/models/half:predict", {"inputs": [1.0]}),
        (200, {"outputs": [2.5]}),
    )

  def test_predict_named_signature_and_version(self):
    status, body = self.request(
        "POST",
        "/v1/models/half/versions/7:predict",
        {"signature_name": "two_outputs", "instances": [2.0]},
    )
    self.assertEqual(status, 200)
    self.assertEqual(body, {"predictions": [{"y": 3.0, "y2": 4.0}]})
    self.assertEqual(self.core.specs[-1].version.value, 7)

  def test_predict_errors(self):
    self.assertEqual(
        self.request("POST", "/v1/models/nope:predict", {"instances": [1.0]}),
        (404, {"error": "Servable not found for request: Latest(nope)"}),
    )
    self.assertEqual(
        self.request(
            "POST",
            "/v1/models/half:predict",
            {"signature_name": "nope", "instances": [1.0]},
        ),
        (
            400,
            {
                "error": (
                    'Serving signature name: "nope" not found in '
                    "signature def"
                )
            },
        ),
    )
    # The body is parsed before the model is looked up, as upstream.
    self.core.specs.clear()
    status, body = self.request("POST", "/v1/models/nope:predict", b"{")
    self.assertEqual(status, 400)
    self.assertStartsWith(body["error"], "JSON Parse error:")
    self.assertEmpty(self.core.specs)

  def test_large_body_is_decoded_off_the_loop_with_the_same_answer(self):
    values = [float(i % 7) for i in range(20000)]
    status, body = self.request(
        "POST", "/v1/models/half:predict", {"instances": values}
    )
    self.assertEqual(status, 200)
    self.assertEqual(body["predictions"], [0.5 * v + 2 for v in values])

  def test_a_large_body_is_freed_with_its_answer_not_by_a_collection(self):
    # A reference cycle through an error's traceback kept a refused body
    # alive until the next full collection, so a second large body found
    # the first still held: growth of two bodies where the budget counts one.

    class Body(bytearray):  # bytearray itself takes no weak references
      pass

    padding = b" " * (2 << 20)
    cases = [
        (padding, 400),  # whitespace alone: refused before any parser
        (b'{"instances": [' + padding + b"2.0]}", 200),
        (b"{" + padding + b"}x", 400),  # parse error, on the error path
        (b'{"instances": [1.0, "x"]}' + padding, 400),  # a decode error
    ]
    gc.disable()
    try:
      for raw, want in cases:
        body = Body(raw)
        freed = weakref.ref(body)
        response = in_process.run(
            self.handler.handle("POST", "/v1/models/half:predict", body)
        )
        del body
        self.assertEqual(response.status, want, response.body)
        # The pool's thread lets go of its job just after handing the
        # answer over; a moment, not a collection.
        until = time.monotonic() + 2.0
        while freed() is not None and time.monotonic() < until:
          time.sleep(0.01)
        self.assertTrue(
            freed() is None, f"body held after {response.body[:80]!r}"
        )
    finally:
      gc.enable()

  def test_classify_and_regress(self):
    self.assertEqual(
        self.request(
            "POST",
            "/v1/models/ex:classify",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
        ),
        (200, {"results": [[["", 3.0]]]}),
    )
    self.assertEqual(
        self.request(
            "POST",
            "/v1/models/ex:regress",
            {
                "signature_name": "regress_x_to_y",
                "context": {"x": 6.0},
                "examples": [{}],
            },
        ),
        (200, {"results": [5.0]}),
    )
    self.assertEqual(
        self.request(
            "POST",
            "/v1/models/ex:regress",
            {"signature_name": "nope", "examples": [{"x": 1.0}]},
        ),
        (400, {"error": "No signature was found with the name: nope"}),
    )

  def test_metadata(self):
    status, body = self.request("GET", "/v1/models/half/metadata")
    self.assertEqual(status, 200)
    self.assertEqual(body["model_spec"]["version"], "7")
    self.assertIn(
        "serving_default", body["metadata"]["signature_def"]["signature_def"]
    )

  def test_malformed_requests(self):
    for method, path in (
        ("GET", "/v1/models/half:predict"),
        ("POST", "/v1/models/half/metadata"),
        ("POST", "/v1/nothing"),
        ("DELETE", "/v1/models/half"),
    ):
      with self.subTest(f"{method} {path}"):
        self.assertEqual(
            self.request(method, path),
            (400, {"error": f"Malformed request: {method} {path}"}),
        )

  def test_metrics_count_rest_requests_under_upstreams_labels(self):
    self.request("POST", "/v1/models/half:predict", {"instances": [1.0]})
    text = metrics.exposition().decode()
    self.assertIn(
        ':tensorflow:serving:request_latency_count{API="Predict",'
        'entrypoint="REST",model_name="half"} 1.0',
        text,
    )

  # --- The Open Inference Protocol's routes -----------------------------------

  def test_v2_infer_json_and_binary_through_the_pipeline(self):
    doc = {
        "id": "a",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}
        ],
    }
    self.assertEqual(
        self.request("POST", "/v2/models/half/versions/7/infer", doc),
        (
            200,
            {
                "model_name": "half",
                "model_version": "7",
                "id": "a",
                "outputs": [
                    {
                        "name": "y",
                        "datatype": "FP32",
                        "shape": [2],
                        "data": [2.5, 3.0],
                    }
                ],
            },
        ),
    )
    self.assertEqual(self.core.specs[-1].version.value, 7)
    doc["parameters"] = {"binary_data_output": True}
    response = in_process.run(
        self.handler.handle(
            "POST", "/v2/models/half/infer", json.dumps(doc).encode()
        )
    )
    self.assertEqual(response.status, 200)
    self.assertEqual(response.content_type, "application/octet-stream")
    (length,) = [
        int(line.split(b": ")[1])
        for line in response.headers.split(b"\r\n")
        if line.startswith(b"Inference-Header-Content-Length")
    ]
    self.assertEqual(
        response.body[length:], b"\x00\x00\x20\x40\x00\x00\x40\x40"
    )
    # Metrics label the API: ModelInfer over REST.
    text = metrics.exposition().decode()
    self.assertIn('API="ModelInfer",entrypoint="REST"', text)

  def test_v2_routes_and_errors(self):
    doc = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]
    }
    self.assertEqual(
        self.request("POST", "/v2/models/nope/infer", doc),
        (404, {"error": "Servable not found for request: Latest(nope)"}),
    )
    status, body = self.request("GET", "/v2/models/half/infer")
    self.assertEqual(status, 400)
    self.assertIn("takes POST requests", body["error"])
    status, body = self.request("GET", "/v2/models/half/stats")
    self.assertEqual(status, 404)
    status, body = self.request("POST", "/v2/models/half/versions/x/infer", doc)
    self.assertEqual(status, 400)
    self.assertIn("version number", body["error"])
    # The control API is off unless the server enables it.
    status, body = self.request(
        "POST", "/v2/repository/models/m/load", {"parameters": {}}
    )
    self.assertEqual(status, 501)
    self.assertIn("--enable_model_control_api", body["error"])
    status, body = self.request("GET", "/v2")
    self.assertEqual((status, body["name"]), (200, "tensorflow_serving"))


class WorkersView:
  """The workers' merged GetModelStatus, as the supervisor would answer it.

  `states[name]` is {version: State}; a model absent from it is unknown.
  """

  def __init__(self, states: dict[str, dict[int, int]]):
    self.states = states
    self.asked: list[str] = []

  async def reload_config(self, config, timeout_s) -> None:
    raise AssertionError("not reached by these tests")

  async def get_model_status(self, request):
    name = request.model_spec.name
    self.asked.append(name)
    versions = self.states.get(name)
    if not versions:
      raise status_lib.not_found(f"Could not find any versions of model {name}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state in sorted(versions.items(), reverse=True):
      if (
          request.model_spec.HasField("version")
          and request.model_spec.version.value != version
      ):
        continue
      entry = response.model_version_status.add(version=version, state=state)
      entry.status.SetInParent()
    return response


class ModelViewTest(absltest.TestCase):
  """Listing, per-model status and readiness read one (cross-worker) view.

  The fake core has no monitor or manager of its own: a route that went
  around the pipeline's view to one worker's state would fail here.
  """

  def setUp(self):
    super().setUp()
    self.core = in_process.FakeCore({"half": (7, None), "ex": (3, None)})
    self.view = WorkersView(
        {"half": {7: State.AVAILABLE, 8: State.LOADING}, "ex": {3: State.START}}
    )
    self.handler = http_rest_api_handler.HttpRestApiHandler(
        in_process.make_pipeline(self.core, self.view)
    )

  def request(self, method, path):
    response = in_process.run(self.handler.handle(method, path, b""))
    return response.status, json.loads(response.body)

  def test_listing_agrees_with_each_models_status(self):
    status, listing = self.request("GET", "/v1/models")
    self.assertEqual(status, 200)
    self.assertEqual([m["name"] for m in listing["models"]], ["half", "ex"])
    for model in listing["models"]:
      status, one = self.request("GET", f"/v1/models/{model['name']}")
      self.assertEqual(status, 200)
      self.assertEqual(
          model["model_version_status"], one["model_version_status"]
      )
    half = listing["models"][0]["model_version_status"]
    self.assertEqual(
        [(v["version"], v["state"]) for v in half],
        [("8", "LOADING"), ("7", "AVAILABLE")],
    )

  def test_listing_shows_a_model_no_worker_knows_with_no_versions(self):
    del self.view.states["ex"]
    _, listing = self.request("GET", "/v1/models")
    self.assertEqual(
        listing["models"][1], {"name": "ex", "model_version_status": []}
    )

  def test_readiness_follows_the_view(self):
    self.assertEqual(
        self.request("GET", "/v1/health/ready"),
        (503, {"error": "Models with no AVAILABLE version: ex"}),
    )
    self.view.states["ex"][3] = State.AVAILABLE
    self.assertEqual(
        self.request("GET", "/v1/health/ready"),
        (200, {"status": "ready", "models": ["ex", "half"]}),
    )
    self.assertEqual(self.view.asked[-2:], ["half", "ex"])

  def test_liveness_asks_nobody(self):
    self.assertEqual(
        self.request("GET", "/v1/health/live"), (200, {"status": "live"})
    )
    self.assertEqual(self.view.asked, [])


if __name__ == "__main__":
  absltest.main()
