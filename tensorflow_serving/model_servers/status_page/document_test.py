"""The status routes and document over a real, in-process ServerCore.

Three models: a batched SavedModel with a label, a TF Lite model, and one
with a hostile name whose second version is corrupt. Requests go through
HttpRestApiHandler exactly as the REST transport sends them.
"""

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import time

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.batching import batching_options
from tensorflow_serving.batching import batching_session
from tensorflow_serving.batching import prometheus_metrics
from tensorflow_serving.batching import shared_batch_scheduler
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.model_servers import http_rest_api_handler
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.model_servers.status_page import page
from tensorflow_serving.model_servers.status_page import routes
from tensorflow_serving.servables.tensorflow import saved_model_loader
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.servables.tensorflow.test_util import tflite_models
from tensorflow_serving.test_util import in_process
from tensorflow_serving.util import metrics

State = get_model_status_pb2.ModelVersionStatus.State
HOSTILE = "<img src=x onerror=alert(1)>"
POOL = "status_test_pool"


def _corrupt(export_dir: str) -> None:
  with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
    f.write(b"\x00\xffnot a SavedModel\x13\x37" * 32)


class StatusDocumentTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    metrics.reset_for_test()
    root = absltest.get_default_test_tmpdir()
    cls.root = os.path.join(root, "models")
    shutil.rmtree(cls.root, ignore_errors=True)
    cls.half_base = os.path.join(cls.root, "half")
    cls.lite_base = os.path.join(cls.root, "lite")
    cls.bad_base = os.path.join(cls.root, "bad<script>")
    half_plus_two.export_half_plus_two_tf1(os.path.join(cls.half_base, "1"))
    tflite_models.export_half_plus_two(os.path.join(cls.lite_base, "1"))
    half_plus_two.export_half_plus_two_tf1(os.path.join(cls.bad_base, "1"))

    options = batching_options.BatchingOptions(
        max_batch_size=8, batch_timeout_micros=0, thread_pool_name=POOL
    ).validated()
    cls.scheduler = shared_batch_scheduler.SharedBatchScheduler.from_options(
        options
    )
    batching = batching_session.BatchingConfig(
        scheduler=cls.scheduler,
        options=options,
        metrics=prometheus_metrics.PrometheusBatchingMetrics(POOL),
    )
    config = model_server_config_pb2.ModelServerConfig()
    models = config.model_config_list.config
    half = models.add(
        name="half", base_path=cls.half_base, model_platform="tensorflow"
    )
    half.model_version_policy.specific.versions.append(1)
    half.version_labels["stable"] = 1
    models.add(
        name="lite", base_path=cls.lite_base, model_platform="tensorflow"
    )
    models.add(
        name=HOSTILE, base_path=cls.bad_base, model_platform="tensorflow"
    )
    tf_config = saved_model_loader.SavedModelConfig(
        prefer_tflite_model=True, batching=batching
    )
    cls.core = server_core_lib.ServerCore.create(
        server_core_lib.ServerCoreOptions(
            model_server_config=config,
            platform_adapters={
                "tensorflow": functools.partial(
                    saved_model_loader.SavedModelBundleSourceAdapter,
                    tf_config,
                )
            },
            file_system_poll_wait_seconds=1,
            max_num_load_retries=0,
            allow_version_labels_for_unavailable_models=True,
        )
    )
    # Version 2 of the hostile model appears once serving, and fails.
    staging = os.path.join(cls.bad_base, ".staging")
    half_plus_two.export_half_plus_two_tf1(staging)
    _corrupt(staging)
    os.rename(staging, os.path.join(cls.bad_base, "2"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
      states = cls.core.monitor.get_version_states(HOSTILE)
      if 2 in states and states[2].state.health is not None:
        break
      time.sleep(0.1)
    else:
      raise AssertionError("version 2 did not fail to load")
    cls.pipeline = in_process.make_pipeline(cls.core)

  @classmethod
  def tearDownClass(cls):
    cls.core.stop()
    cls.scheduler.shutdown()
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    # A fresh page (and history) per test; the tests sample by hand.
    self.serve_page(routes.StatusPageOptions())

  def serve_page(self, options):
    self.page = routes.StatusPage(self.pipeline, options)
    self.handler = http_rest_api_handler.HttpRestApiHandler(
        self.pipeline, status_page=self.page
    )

  def call(self, method, path, body=b""):
    return in_process.run(self.handler.handle(method, path, body))

  def get(self, path, method="GET"):
    return self.call(method, path)

  def status_doc(self):
    response = self.get("/v1/status")
    self.assertEqual(response.status, 200, response.body)
    self.assertEqual(response.content_type, "application/json")
    return json.loads(response.body)

  def model(self, doc, name):
    (found,) = [m for m in doc["models"] if m["name"] == name]
    return found

  # --- Routes -----------------------------------------------------------------

  def test_page_routes(self):
    for path in ("/", "/status", "/STATUS"):
      response = self.get(path)
      self.assertEqual(response.status, 200, path)
      self.assertEqual(response.content_type, "text/html; charset=utf-8")
      self.assertIn(
          b"<title>TensorFlow ModelServer status</title>", response.body
      )

  def test_page_is_static_and_its_policy_allows_only_its_own_code(self):
    html = self.get("/").body.decode()
    # No model data in the page itself: it all comes as JSON, set as text.
    self.assertNotIn("half", html)
    self.assertNotIn("innerHTML", html)
    self.assertNotIn("insertAdjacentHTML", html)
    self.assertNotIn("document.write", html)
    csp = re.search(
        r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html
    ).group(1)
    script = re.search(r"<script>(.*)</script>", html, re.S).group(1)
    style = re.search(r"<style>(.*)</style>", html, re.S).group(1)

    def digest(text):
      raw = hashlib.sha256(text.encode()).digest()
      return "'sha256-" + base64.b64encode(raw).decode() + "'"

    self.assertIn(f"script-src {digest(script)};", csp)
    self.assertIn(f"style-src {digest(style)};", csp)
    self.assertIn("default-src 'none'", csp)
    self.assertIn("connect-src 'self'", csp)
    self.assertNotIn("unsafe", csp)
    self.assertEqual(html.encode(), page.html())

  def test_other_methods_get_upstreams_answers(self):
    for path in ("/", "/status"):
      response = self.get(path, "POST")
      self.assertEqual(response.status, 404)
      self.assertEqual(json.loads(response.body), {"error": "Not Found"})
    response = self.get("/v1/status", "POST")
    self.assertEqual(response.status, 400)
    self.assertEqual(
        json.loads(response.body),
        {"error": "Malformed request: POST /v1/status"},
    )

  def test_disabled(self):
    self.serve_page(routes.StatusPageOptions(enabled=False))
    for path in ("/", "/status"):
      response = self.get(path)
      self.assertEqual(response.status, 404)
      self.assertEqual(json.loads(response.body), {"error": "Not Found"})
    response = self.get("/v1/status")
    self.assertEqual(response.status, 400)
    self.assertEqual(
        json.loads(response.body),
        {"error": "Malformed request: GET /v1/status"},
    )
    # The rest of the API is untouched.
    self.assertEqual(self.get("/v1/models/half").status, 200)

  def test_status_requests_are_not_counted_as_model_requests(self):
    before = metrics.exposition()
    self.status_doc()
    self.get("/")
    self.assertEqual(metrics.exposition(), before)

  # --- The document -----------------------------------------------------------

  def test_models_versions_and_signatures(self):
    doc = self.status_doc()
    self.assertEqual(
        [m["name"] for m in doc["models"]], ["half", "lite", HOSTILE]
    )
    half = self.model(doc, "half")
    self.assertEqual(half["base_path"], self.half_base)
    self.assertEqual(half["model_platform"], "tensorflow")
    self.assertEqual(half["version_policy"], {"specific": {"versions": [1]}})
    self.assertEqual(half["labels"], {"stable": 1})
    (v1,) = half["versions"]
    self.assertEqual(v1["version"], 1)
    self.assertEqual(v1["state"], "AVAILABLE")
    self.assertIsNone(v1["error"])
    self.assertEqual(v1["platform"], "SavedModel")
    self.assertEqual(v1["batching"], {"thread_pool_name": POOL})
    self.assertEqual(v1["loaded_at"], v1["since"])
    self.assertAlmostEqual(v1["loaded_at"], time.time(), delta=600)
    sigs = {s["key"]: s for s in v1["signatures"]}
    self.assertIn("regress_x_to_y", sigs)
    self.assertEqual(
        sigs["serving_default"],
        {
            "key": "serving_default",
            "method_name": "tensorflow/serving/predict",
            "inputs": [{"alias": "x", "dtype": "DT_FLOAT", "shape": [-1]}],
            "outputs": [{"alias": "y", "dtype": "DT_FLOAT", "shape": [-1]}],
        },
    )

    lite = self.model(doc, "lite")
    self.assertEqual(lite["version_policy"], {"latest": {"num_versions": 1}})
    self.assertEqual(lite["labels"], {})
    self.assertEqual(lite["versions"][0]["platform"], "TF Lite")

  def test_failed_version_and_its_error(self):
    bad = self.model(self.status_doc(), HOSTILE)
    self.assertEqual([v["version"] for v in bad["versions"]], [2, 1])
    v2, v1 = bad["versions"]
    self.assertEqual(v2["state"], "END")
    self.assertIsNone(v2["loaded_at"])
    self.assertIsNone(v2["signatures"])
    self.assertIsNotNone(v2["error"])
    self.assertIn("saved_model.pb", v2["error"]["message"])
    self.assertEqual(v1["state"], "AVAILABLE")
    # The same error GetModelStatus reports.
    upstream = json.loads(
        self.get("/v1/models/" + HOSTILE.replace(" ", "%20")).body
    )
    reported = [
        s for s in upstream["model_version_status"] if s["version"] == "2"
    ]
    self.assertEqual(
        reported[0]["status"]["error_message"], v2["error"]["message"]
    )

  def test_versions_come_from_the_model_view(self):
    # Under --num_workers the view is every worker's merged answer: here a
    # version 2 that another worker is still loading, which this process
    # has not seen.
    class OtherWorkerLoading:

      async def reload_config(self, config, timeout_s):
        raise AssertionError("not reached")

      async def get_model_status(self, request):
        response = get_model_status_pb2.GetModelStatusResponse()
        if request.model_spec.name == "half":
          for version, state in ((2, State.LOADING), (1, State.AVAILABLE)):
            response.model_version_status.add(version=version, state=state)
        return response

    pipeline = in_process.make_pipeline(self.core, OtherWorkerLoading())
    handler = http_rest_api_handler.HttpRestApiHandler(
        pipeline, status_page=routes.StatusPage(pipeline)
    )
    response = in_process.run(handler.handle("GET", "/v1/status", b""))
    half = self.model(json.loads(response.body), "half")
    v2, v1 = half["versions"]
    self.assertEqual((v2["version"], v2["state"]), (2, "LOADING"))
    self.assertIsNone(v2["since"])
    self.assertIsNone(v2["signatures"])
    self.assertEqual((v1["version"], v1["state"]), (1, "AVAILABLE"))
    self.assertIsNotNone(v1["since"])
    self.assertIn("serving_default", [sig["key"] for sig in v1["signatures"]])
    # A model the view has no version of shows none, though loaded here.
    self.assertEqual(
        self.model(json.loads(response.body), "lite")["versions"], []
    )
    listing = json.loads(
        in_process.run(handler.handle("GET", "/v1/models", b"")).body
    )
    self.assertEqual(
        [
            (v["version"], v["state"])
            for v in listing["models"][0]["model_version_status"]
        ],
        [("2", "LOADING"), ("1", "AVAILABLE")],
    )

  def test_no_path_outside_the_base_paths(self):
    text = self.get("/v1/status").body.decode()
    doc = json.loads(text)
    strings = []

    def walk(value):
      if isinstance(value, dict):
        for k, v in value.items():
          walk(k)
          walk(v)
      elif isinstance(value, list):
        for v in value:
          walk(v)
      elif isinstance(value, str):
        strings.append(value)

    walk(doc)
    bases = (self.half_base, self.lite_base, self.bad_base)
    tmp = os.path.dirname(self.root)
    for s in strings:
      for found in re.finditer(re.escape(tmp), s):
        self.assertTrue(
            any(s.startswith(b, found.start()) for b in bases),
            f"path outside the base paths in {s!r}",
        )

  def test_traffic_between_two_readings(self):
    sampler = self.page.sampler
    sampler.sample(now_s=1000.0, wall_s=5000.0)
    for _ in range(3):
      response = self.call(
          "POST", "/v1/models/half:predict", b'{"instances": [1.0, 2.0]}'
      )
      self.assertEqual(response.status, 200, response.body)
    response = self.call(
        "POST", "/v1/models/half/versions/9:predict", b'{"instances": [1.0]}'
    )
    self.assertEqual(response.status, 404)
    response = self.call(
        "POST", "/v1/models/nonexistent:predict", b'{"instances": [1.0]}'
    )
    self.assertEqual(response.status, 404)
    sampler.sample(now_s=1002.0, wall_s=5002.0)
    doc = self.status_doc()
    self.assertEqual(doc["history"]["t"], [5002.0])
    self.assertEqual(doc["history"]["period_s"], 2.0)
    traffic = self.model(doc, "half")["traffic"]
    self.assertEqual(traffic["requests_per_s"], [2.0])
    self.assertEqual(traffic["errors_per_s"], {"NOT_FOUND": [0.5]})
    self.assertGreater(traffic["p50_ms"][0], 0)
    self.assertGreaterEqual(traffic["p99_ms"][0], traffic["p50_ms"][0])
    self.assertGreaterEqual(traffic["totals"]["requests"], 4)
    self.assertGreaterEqual(traffic["totals"]["by_status"]["NOT_FOUND"], 1)
    # The unknown model only counts in the server-wide series.
    self.assertEqual(doc["traffic"]["requests_per_s"], [2.5])
    self.assertEqual(doc["traffic"]["errors_per_s"], {"NOT_FOUND": [1.0]})
    lite = self.model(doc, "lite")["traffic"]
    self.assertEqual(lite["requests_per_s"], [0.0])
    self.assertEqual(lite["p50_ms"], [None])
    # Batched predicts: three batches of two rows, or fewer larger ones.
    (pool,) = [p for p in doc["batching"] if p["thread_pool_name"] == POOL]
    self.assertGreater(pool["batches_per_s"][0], 0)
    self.assertGreaterEqual(pool["mean_batch_size"][0], 2.0)
    rows = sum(
        b["batches"] * (b["le"] or 0) for b in pool["batch_size_distribution"]
    )
    self.assertGreaterEqual(rows, 6)

  def test_server_facts(self):
    server = self.status_doc()["server"]
    self.assertEqual(server["workers"], 1)
    self.assertGreaterEqual(server["uptime_s"], 0)
    self.assertIn(server["build"]["device"], ("cpu", "cuda"))
    self.assertTrue(server["tensorflow_version"])
    self.assertEqual(
        server["grpc_tls"], {"enabled": False, "client_verify": False}
    )


if __name__ == "__main__":
  absltest.main()
