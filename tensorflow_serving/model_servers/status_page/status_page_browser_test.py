"""The status page in headless Chromium, against the real server binary.

Two models: `m`, whose version 2 is corrupt and fails to load, and one named
`<img src=x onerror=alert(1)>`. The browser must show both, their states and
the load error, draw charts that move after a burst of requests, and show
the hostile name as text: no element made from it and no script run. The
escaping check runs a second time with the page's Content-Security-Policy
bypassed, so it is the page's own escaping that is tested, not the policy.

Needs Debian's `chromium` and `chromium-driver` (tools/setup.sh installs
them) and the pinned `selenium`.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import time
import urllib.error
import urllib.request

from absl.testing import absltest

from tensorflow_serving.model_servers.status_page.test_util import chromium
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import model_server

HOSTILE = "<img src=x onerror=alert(1)>"
# Runs before the page's own script: records alerts and policy violations.
HOOKS = """
window.__alerts = [];
window.alert = (m) => { window.__alerts.push(String(m)); };
window.__violations = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__violations.push(e.violatedDirective));
"""
# What the page shows, read back by the test.
READ_PAGE = """
const cards = {};
for (const card of document.querySelectorAll('section.model')) {
  const name = card.querySelector('.model-name').textContent;
  const charts = {};
  for (const c of card.querySelectorAll('figure.chart')) {
    const path = c.querySelector('path');
    charts[c.dataset.chart] = {
      max: Number(c.dataset.max || 0),
      points: Number(c.dataset.points || 0),
      paths: c.querySelectorAll('svg path').length,
      d: path ? path.getAttribute('d') : '',
      legend: c.querySelector('.legend').textContent,
    };
  }
  cards[name] = {
    versions: [...card.querySelectorAll('tr.version')].map((r) => [
        r.dataset.version, r.querySelector('.badge').textContent]),
    errors: [...card.querySelectorAll('pre.error')].map((e) => e.textContent),
    labels: card.querySelector('.labels').textContent,
    signatures: card.querySelector('details.signatures summary').textContent,
    charts: charts,
  };
}
return {
  updates: Number(document.body.dataset.updates || 0),
  cards: cards,
  names: [...document.querySelectorAll('.model-name')].map(
      (e) => e.textContent),
  imgs: document.querySelectorAll('img').length,
  alerts: window.__alerts,
  violations: window.__violations,
  conn: document.getElementById('conn').textContent,
};
"""


def _wait_for(predicate, timeout_s: float, what: str):
  deadline = time.monotonic() + timeout_s
  while True:
    value = predicate()
    if value:
      return value
    if time.monotonic() > deadline:
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.2)


class StatusPageBrowserTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = binaries.test_tmpdir()
    good = half_plus_two.export_half_plus_two_tf1(os.path.join(root, "m", "1"))
    cls.m_base = os.path.dirname(good)
    cls.evil_base = os.path.join(root, "evil")
    shutil.copytree(good, os.path.join(cls.evil_base, "1"))
    config = os.path.join(root, "models.config")
    with open(config, "w") as f:
      f.write(f"""
model_config_list {{
  config {{
    name: "m" base_path: "{cls.m_base}" model_platform: "tensorflow"
    version_labels {{ key: "stable" value: 1 }}
  }}
  config {{
    name: "{HOSTILE}" base_path: "{cls.evil_base}"
    model_platform: "tensorflow"
  }}
}}
""")
    cls.server = model_server.start_server(
        [
            f"--model_config_file={config}",
            "--allow_version_labels_for_unavailable_models",
            "--file_system_poll_wait_seconds=1",
            "--max_num_load_retries=0",
            "--enable_batching",
        ]
    )
    try:
      cls.server.wait_until_serving()
      # A corrupt version 2 of m: retried never, ends with its error while
      # version 1 keeps serving.
      staging = os.path.join(cls.m_base, ".staging-2")
      shutil.copytree(good, staging)
      with open(os.path.join(staging, "saved_model.pb"), "wb") as f:
        f.write(b"\x00\xffnot a SavedModel\x13\x37" * 32)
      os.rename(staging, os.path.join(cls.m_base, "2"))
      _wait_for(cls._version_2_failed, 60, "version 2 of m to fail")
      cls.driver = cls._start_browser(root)
    except BaseException:
      cls.server.stop()
      raise

  @classmethod
  def tearDownClass(cls):
    driver = getattr(cls, "driver", None)
    if driver is not None:
      driver.quit()
    cls.server.stop()
    super().tearDownClass()

  @classmethod
  def _version_2_failed(cls) -> bool:
    doc = cls._get_json("/v1/status")
    (m,) = [x for x in doc["models"] if x["name"] == "m"]
    return any(v["version"] == 2 and v["error"] for v in m["versions"])

  @classmethod
  def _get_json(cls, path: str):
    with urllib.request.urlopen(cls.server.rest_url + path, timeout=10) as r:
      return json.loads(r.read())

  @classmethod
  def _start_browser(cls, root: str):
    driver = chromium.start(os.path.join(root, "chromium"))
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HOOKS}
    )
    return driver

  def read_page(self):
    return self.driver.execute_script(READ_PAGE)

  def wait_for_page(self, predicate, timeout_s, what):
    last = {}

    def check():
      last["page"] = self.read_page()
      return predicate(last["page"])

    try:
      _wait_for(check, timeout_s, what)
    except AssertionError as exc:
      raise AssertionError(f"{exc}; page: {last.get('page')}") from None
    return last["page"]

  def burst(self, n: int = 400) -> None:
    """n Predict calls to m (one in ten for a version that does not exist)."""
    url = self.server.rest_url

    def call(i: int) -> int:
      path = (
          "/v1/models/m/versions/9:predict"
          if i % 10 == 0
          else ("/v1/models/m:predict")
      )
      request = urllib.request.Request(
          url + path, data=b'{"instances": [1.0, 2.0, 5.0]}'
      )
      try:
        with urllib.request.urlopen(request, timeout=10) as r:
          return r.status
      except urllib.error.HTTPError as exc:
        return exc.code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      codes = list(pool.map(call, range(n)))
    self.assertEqual(codes.count(200), n - n // 10)
    self.assertEqual(codes.count(404), n // 10)

  def test_page(self):
    driver = self.driver
    driver.get(self.server.rest_url + "/")
    self.assertEqual(driver.title, "TensorFlow ModelServer status")
    page = self.wait_for_page(
        lambda p: p["updates"] >= 2 and len(p["cards"]) == 2,
        20,
        "two updates showing both models",
    )
    # Models, states and the load error.
    self.assertEqual(page["names"], ["m", HOSTILE])
    m = page["cards"]["m"]
    self.assertEqual(m["versions"], [["2", "FAILED"], ["1", "AVAILABLE"]])
    (error,) = m["errors"]
    self.assertIn("saved_model.pb", error)
    self.assertTrue(error.startswith("DATA_LOSS: "), error)
    self.assertIn("stable → v1", m["labels"])
    self.assertEqual(m["signatures"], "Signatures (5)")
    evil = page["cards"][HOSTILE]
    self.assertEqual(evil["versions"], [["1", "AVAILABLE"]])
    # Charts are there (one path each once history has two points).
    self.assertEqual(set(m["charts"]), {"requests", "latency", "errors"})
    self.assertEqual(page["violations"], [])
    self.assertIn("Updated", page["conn"])

    before = page["cards"]["m"]["charts"]
    self.burst()
    page = self.wait_for_page(
        lambda p: p["cards"]["m"]["charts"]["requests"]["max"] > 0
        and p["cards"]["m"]["charts"]["latency"]["max"] > 0
        and "NOT_FOUND" in p["cards"]["m"]["charts"]["errors"]["legend"],
        20,
        "the charts to show the burst",
    )
    after = page["cards"]["m"]["charts"]
    self.assertGreater(after["requests"]["max"], before["requests"]["max"])
    self.assertNotEqual(after["requests"]["d"], before["requests"]["d"])
    self.assertGreater(after["errors"]["max"], 0)
    # The other model saw none of it.
    self.assertEqual(page["cards"][HOSTILE]["charts"]["requests"]["max"], 0)
    # The batch pool's chart appeared with the batched requests.
    pools = driver.execute_script(
        "return [...document.querySelectorAll('section.pool figure.chart')]"
        ".map((c) => [c.dataset.chart, Number(c.dataset.max || 0)]);"
    )
    self.assertIn("batch-sizes", dict(pools))
    self.assertGreater(dict(pools)["batch-sizes"], 0)
    # The hostile name is text, and nothing ran.
    self.assertEqual(page["imgs"], 0)
    self.assertEqual(page["alerts"], [])
    self.assertEqual(page["violations"], [])

    outputs = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if outputs:
      driver.save_screenshot(os.path.join(outputs, "status_page.png"))

  def test_hostile_name_is_text_even_without_the_policy(self):
    driver = self.driver
    driver.execute_cdp_cmd("Page.setBypassCSP", {"enabled": True})
    try:
      driver.get(self.server.rest_url + "/status")
      page = self.wait_for_page(
          lambda p: p["updates"] >= 1 and HOSTILE in p["cards"],
          20,
          "the hostile model's card",
      )
      self.assertEqual(page["imgs"], 0)
      self.assertEqual(page["alerts"], [])
      heading = driver.execute_script(
          "return [...document.querySelectorAll('.model-name')]"
          ".map((e) => [e.textContent, e.children.length]);"
      )
      self.assertIn([HOSTILE, 0], heading)
    finally:
      driver.execute_cdp_cmd("Page.setBypassCSP", {"enabled": False})


if __name__ == "__main__":
  absltest.main()
