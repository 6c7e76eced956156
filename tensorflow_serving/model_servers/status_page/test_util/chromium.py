"""Headless Chromium through selenium, as the browser test and the
screenshot tool drive it: Debian's `chromium` and `chromium-driver` (installed
by tools/setup.sh), a fresh profile, nothing fetched from the network.
"""

from __future__ import annotations

import os

from selenium import webdriver
from selenium.webdriver.chrome import options as chrome_options
from selenium.webdriver.chrome import service as chrome_service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless as root, and quiet: no sandbox (root), no GPU, no first-run,
# update, sync or other background requests.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def start(
    work_dir: str,
    width: int = 1280,
    height: int = 1700,
    extra_flags: tuple[str, ...] = (),
):
  """A driven Chromium with its profile and driver log under `work_dir`."""
  os.makedirs(work_dir, exist_ok=True)
  options = chrome_options.Options()
  options.binary_location = CHROMIUM
  for flag in FLAGS + tuple(extra_flags):
    options.add_argument(flag)
  options.add_argument(f"--window-size={width},{height}")
  options.add_argument("--user-data-dir=" + os.path.join(work_dir, "profile"))
  service = chrome_service.Service(
      executable_path=CHROMEDRIVER,
      log_output=os.path.join(work_dir, "chromedriver.log"),
  )
  driver = webdriver.Chrome(service=service, options=options)
  driver.set_page_load_timeout(30)
  driver.set_script_timeout(10)
  return driver
