"""The status page as one HTML document, its script and style inlined.

The page is hand-written HTML, JavaScript and CSS in `assets/` (no build
step, nothing fetched from elsewhere). Inlining them keeps the server to one
page route, and lets the page carry a Content-Security-Policy that allows
exactly that script and that style, by hash, and network requests to this
origin only. The script never parses data as HTML (it builds every node with
textContent), so a hostile model name is text; the policy is a second wall
behind that: no inline event handler or injected script could run.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os

_ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
_STYLE_MARK = "/*STATUS_CSS*/"
_SCRIPT_MARK = "/*STATUS_JS*/"
_CSP_MARK = "STATUS_CSP"
CONTENT_TYPE = "text/html; charset=utf-8"


def _read(name: str) -> str:
  with open(os.path.join(_ASSETS, name), encoding="utf-8") as f:
    return f.read()


def _sha256(text: str) -> str:
  digest = hashlib.sha256(text.encode("utf-8")).digest()
  return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


@functools.cache
def content_security_policy() -> str:
  """The page's policy: its own script and style by hash, requests to self."""
  script = _read("status.js")
  style = _read("status.css")
  return "; ".join(
      (
          "default-src 'none'",
          f"script-src {_sha256(script)}",
          f"style-src {_sha256(style)}",
          "connect-src 'self'",
          "img-src 'none'",
          "base-uri 'none'",
          "form-action 'none'",
      )
  )


@functools.cache
def html() -> bytes:
  """The page, assembled once per process."""
  template = _read("status.html")
  style = _read("status.css")
  script = _read("status.js")
  for mark in (_STYLE_MARK, _SCRIPT_MARK, _CSP_MARK):
    if template.count(mark) != 1:
      raise ValueError(f"status.html must hold {mark} exactly once")
  if "</script" in script.lower() or "</style" in style.lower():
    raise ValueError("status.js/status.css must not close their element")
  page = (
      template.replace(_CSP_MARK, content_security_policy())
      .replace(_STYLE_MARK, style)
      .replace(_SCRIPT_MARK, script)
  )
  return page.encode("utf-8")
