"""docs/monitoring.md's screenshot: the status page of a server under load.

Serves two models, `half_plus_two` (batched SavedModel, a label, and a
corrupt version 2 that fails to load) and `half_plus_two_lite` (TF Lite),
sends a varying REST load with a few bad requests for `--load_s` seconds
from a bounded pool of client threads on loopback, then saves a PNG of the
page with the second model's signatures open.

    bazel run -c opt //tensorflow_serving/model_servers/status_page:screenshot -- \
      --out=$PWD/docs/status_page.png
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request

from absl import app
from absl import flags

from tensorflow_serving.model_servers.status_page.test_util import chromium
from tensorflow_serving.model_servers.test_util import model_server
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.servables.tensorflow.test_util import tflite_models

_OUT = flags.DEFINE_string("out", "status_page.png", "Where the PNG goes.")
_LOAD_S = flags.DEFINE_integer("load_s", 75, "Seconds of load before.")
_THREADS = flags.DEFINE_integer("threads", 4, "Client threads.")
_WIDTH = flags.DEFINE_integer("width", 1100, "Browser width, CSS pixels.")


def _load(url: str, stop: threading.Event, started: float, seed: int) -> None:
  """Requests at a rate that rises and falls; one in 25 goes wrong."""
  i = seed
  while not stop.is_set():
    i += 1
    phase = (time.monotonic() - started) / 20.0
    # Pause between requests: short at the crest of the wave, long in it
    # trough, so the charts show traffic moving.
    time.sleep(0.0005 + 0.004 * (1 + math.sin(phase)) / 2)
    model = "half_plus_two" if i % 3 else "half_plus_two_lite"
    path, body = f"/v1/models/{model}:predict", b'{"instances": [1.0, 2.0]}'
    if i % 25 == 0:
      path = "/v1/models/half_plus_two/versions/7:predict"
    elif i % 25 == 12:
      body = b'{"instances": "not a tensor"}'
    request = urllib.request.Request(url + path, data=body)
    try:
      with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    except urllib.error.HTTPError as exc:
      exc.read()


def main(argv):
  del argv
  root = tempfile.mkdtemp(prefix="status_screenshot_")
  half = os.path.join(root, "half_plus_two")
  half_plus_two.export_half_plus_two_tf1(os.path.join(half, "1"))
  lite = os.path.join(root, "half_plus_two_lite")
  tflite_models.export_half_plus_two(os.path.join(lite, "1"))
  config = os.path.join(root, "models.config")
  with open(config, "w") as f:
    f.write(f"""
model_config_list {{
  config {{
    name: "half_plus_two" base_path: "{half}" model_platform: "tensorflow"
    version_labels {{ key: "stable" value: 1 }}
  }}
  config {{
    name: "half_plus_two_lite" base_path: "{lite}"
    model_platform: "tensorflow"
  }}
}}
""")
  server = model_server.start_server(
      [
          f"--model_config_file={config}",
          "--allow_version_labels_for_unavailable_models",
          "--max_num_load_retries=0",
          "--enable_batching",
          "--prefer_tflite_model",
      ],
      log_dir=root,
  )
  stop = threading.Event()
  threads = []
  driver = None
  try:
    server.wait_until_serving()
    staging = os.path.join(half, ".staging-2")
    shutil.copytree(os.path.join(half, "1"), staging)
    with open(os.path.join(staging, "saved_model.pb"), "wb") as f:
      f.write(b"\x00\xffnot a SavedModel" * 32)
    os.rename(staging, os.path.join(half, "2"))
    started = time.monotonic()
    for seed in range(_THREADS.value):
      thread = threading.Thread(
          target=_load, args=(server.rest_url, stop, started, seed)
      )
      thread.start()
      threads.append(thread)
    time.sleep(_LOAD_S.value)
    driver = chromium.start(
        os.path.join(root, "chromium"),
        _WIDTH.value,
        900,
        extra_flags=("--hide-scrollbars",),
    )
    driver.get(server.rest_url + "/")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
      if driver.execute_script("return document.body.dataset.updates"):
        break
      time.sleep(0.2)
    driver.execute_script(
        "document.querySelectorAll('section.model details')[1].open = true;"
    )
    time.sleep(0.5)
    # The whole page, not just the window.
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            },
        },
    )
    with open(_OUT.value, "wb") as f:
      f.write(base64.b64decode(shot["data"]))
    print(f"wrote {_OUT.value}")
  finally:
    stop.set()
    for thread in threads:
      thread.join()
    if driver is not None:
      driver.quit()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
