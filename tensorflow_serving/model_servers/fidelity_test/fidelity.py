"""The fidelity suite's harness: one request, upstream's answer, ours.

Each check sends one request to the real `tensorflow_model_server` (a
subprocess, as users run it), compares the answer with what upstream
TensorFlow Serving answers (taken from upstream's docs and tests, cited at
each case), records a row for the suite's table, and fails the test when the
answers differ. Rows are printed to the test log and written as markdown to
`$TEST_UNDECLARED_OUTPUTS_DIR`; `fidelity_table` gathers every suite's rows
into one table, docs/fidelity.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import json
import math
import os
import sys
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.test_util import model_server
from tensorflow_serving.test_util import session_oracle

Code = grpc.StatusCode
# Expected Predict output: (DataType, shape, values as nested lists).
Output = tuple[int, Sequence[int], Any]


@dataclasses.dataclass
class Row:
  suite: str
  model: str
  request: str
  upstream: str
  ours: str
  ok: bool
  source: str


ROWS: list[Row] = []
# How the table shows a message TensorFlow computed: its words differ between
# machines, and the table must read the same on every one.
TF_MESSAGE = "<TensorFlow's own message>"


def _portable(text: str) -> str:
  """`text` with every message TensorFlow computed replaced by TF_MESSAGE."""
  for message in sorted(session_oracle.MESSAGES, key=len, reverse=True):
    text = text.replace(repr(message), TF_MESSAGE).replace(message, TF_MESSAGE)
  return text


def _cell(text: str, limit: int = 160) -> str:
  text = " ".join(str(text).split())
  if len(text) > limit:
    text = text[: limit - 1] + "…"
  return text.replace("|", "\\|")


def markdown(rows: Sequence[Row]) -> str:
  """The table as the README shows it: one line per request."""
  lines = [
      "| suite | model | request | upstream's answer | ours | based on |",
      "|---|---|---|---|---|---|",
  ]
  for r in rows:
    ours = "same" if r.ok else "**differs:** " + r.ours
    lines.append(
        "| "
        + " | ".join(
            _cell(c)
            for c in (r.suite, r.model, r.request, r.upstream, ours, r.source)
        )
        + " |"
    )
  passed = sum(r.ok for r in rows)
  lines.append("")
  lines.append(f"{passed} of {len(rows)} requests answered as upstream does.")
  return "\n".join(lines) + "\n"


def write_suite_table(suite: str) -> None:
  """Prints this suite's rows (test log) and writes them to test outputs."""
  rows = [r for r in ROWS if r.suite == suite]
  text = markdown(rows)
  sys.stdout.write(f"\nFidelity table, suite {suite}:\n\n{text}\n")
  out_dir = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
  if out_dir:
    with open(
        os.path.join(out_dir, f"fidelity_{suite}.md"), "w", encoding="utf-8"
    ) as f:
      f.write(text)


def same_json(actual: Any, expected: Any) -> bool:
  """JSON equality that also tells 3.0 from 3 (upstream writes floats with
  a decimal point, json_tensor.cc WriteDecimal) and NaN from NaN."""
  if isinstance(expected, bool) or expected is None:
    return actual is expected
  if isinstance(expected, float):
    if not isinstance(actual, float):
      return False
    if math.isnan(expected):
      return math.isnan(actual)
    return actual == expected
  if isinstance(expected, int):
    return type(actual) is int and actual == expected
  if isinstance(expected, str):
    return actual == expected
  if isinstance(expected, list):
    return (
        isinstance(actual, list)
        and len(actual) == len(expected)
        and all(same_json(a, e) for a, e in zip(actual, expected))
    )
  if isinstance(expected, dict):
    return (
        isinstance(actual, dict)
        and set(actual) == set(expected)
        and all(same_json(actual[k], expected[k]) for k in expected)
    )
  raise TypeError(f"unsupported expected value {expected!r}")


def describe_tensor(tensor: tensor_pb2.TensorProto) -> str:
  try:
    values = tf.make_ndarray(tensor).tolist()
  except Exception as e:  # pylint: disable=broad-except
    values = f"<undecodable: {e}>"
  dims = [d.size for d in tensor.tensor_shape.dim]
  packed = " (tensor_content)" if tensor.tensor_content else ""
  return f"{types_pb2.DataType.Name(tensor.dtype)} {dims} {values}{packed}"


def describe_response(response: Any) -> str:
  """One line for the table: outputs of a Predict, results otherwise."""
  if hasattr(response, "outputs"):
    outs = ", ".join(
        f"{k}: {describe_tensor(v)}"
        for k, v in sorted(response.outputs.items())
    )
    return f"OK {{{outs}}}"
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top

  return "OK " + text_format.MessageToString(response, as_one_line=True)


class FidelityTestCase(util.ApiTestCase):
  """Checks that record a table row each; subclasses start one server."""

  SUITE = ""
  server: model_server.ModelServer
  clients: util.GrpcClients

  @classmethod
  def tearDownClass(cls):
    write_suite_table(cls.SUITE)
    super().tearDownClass()

  def _record(
      self,
      model: str,
      request: str,
      upstream: str,
      ours: str,
      source: str,
      check: Callable[[], None],
  ) -> None:
    upstream = _portable(upstream)
    try:
      check()
    except AssertionError:
      ROWS.append(
          Row(self.SUITE, model, request, upstream, ours, False, source)
      )
      raise
    ROWS.append(Row(self.SUITE, model, request, upstream, ours, True, source))

  # --- REST -----------------------------------------------------------------

  def rest(
      self,
      model: str,
      method: str,
      path: str,
      body: Any = None,
      *,
      source: str,
      status: int = 200,
      doc: Any = None,
      check_doc: Callable[[Any], None] | None = None,
      error: str | None = None,
      error_prefix: str | None = None,
      error_contains: Sequence[str] = (),
  ) -> util.HttpResponse:
    """Sends `body` (a JSON value, or raw text when a str) to `path`.

    Upstream's answer is `status` with the JSON `doc`, or (for errors) an
    `{"error": ...}` body equal to `error`, starting with `error_prefix`
    and/or containing each of `error_contains`.
    """
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    response = util.http_request(self.server, method, path, raw)
    text = response.body.decode("utf-8", "replace")
    request = f"{method} {path}" + (f" {raw}" if raw is not None else "")
    if doc is not None:
      upstream = f"{status} {json.dumps(doc)}"
    elif check_doc is not None:
      upstream = f"{status} " + (check_doc.__doc__ or "").strip()
    else:
      parts = []
      if error is not None:
        parts.append(f"= {error!r}")
      if error_prefix is not None:
        parts.append(f"starting {error_prefix!r}")
      parts.extend(f"containing {c!r}" for c in error_contains)
      upstream = f'{status} {{"error": ...}} ' + ", ".join(parts)

    def check():
      self.assertEqual(response.status, status, msg=text[:2000])
      self.assertIn("application/json", response.content_type)
      parsed = response.json()
      if doc is not None:
        self.assertTrue(
            same_json(parsed, doc), msg=f"got {text[:2000]}, want {doc}"
        )
      if check_doc is not None:
        check_doc(parsed)
      if status != 200:
        self.assertEqual(list(parsed), ["error"], msg=text[:2000])
        message = parsed["error"]
        if error is not None:
          self.assertEqual(message, error)
        if error_prefix is not None:
          self.assertTrue(
              message.startswith(error_prefix),
              msg=f"{message!r} does not start with {error_prefix!r}",
          )
        for part in error_contains:
          self.assertIn(part, message)

    self._record(
        model, request, upstream, f"{response.status} {text}", source, check
    )
    return response

  # --- gRPC -----------------------------------------------------------------

  def grpc(
      self,
      model: str,
      request: str,
      call: Callable[[], Any],
      *,
      source: str,
      upstream: str,
      check: Callable[[Any], None] | None = None,
      code: grpc.StatusCode | None = None,
      message: str | None = None,
      prefix: str | None = None,
      contains: Sequence[str] = (),
  ) -> Any:
    """Runs `call`; upstream answers OK (then `check` holds) or `code`."""
    result: Any = None
    error: grpc.RpcError | None = None
    try:
      result = call()
      ours = describe_response(result)
    except grpc.RpcError as e:
      error = e
      ours = f"{e.code().name}: {e.details()}"

    def verify():
      if code is None:
        self.assertIsNone(error, msg=ours)
        if check is not None:
          check(result)
        return
      self.assertIsNotNone(error, msg=f"want {code.name}, got {ours}")
      self.assertEqual(error.code(), code, msg=ours)
      details = error.details() or ""
      if message is not None:
        self.assertEqual(details, message)
      if prefix is not None:
        self.assertTrue(
            details.startswith(prefix),
            msg=f"{details!r} does not start with {prefix!r}",
        )
      for part in contains:
        self.assertIn(part, details)

    self._record(model, request, upstream, ours, source, verify)
    return result

  def assertOutputs(
      self,
      response: Any,
      outputs: Mapping[str, Output],
      packed: bool = False,
  ) -> None:
    """Predict outputs equal `outputs` (dtype, shape, values); values come
    in the typed repeated field (upstream's default kAsProtoField) unless
    `packed` (--enable_serialization_as_tensor_content)."""
    self.assertEqual(set(response.outputs), set(outputs))
    for alias, (dtype, shape, values) in outputs.items():
      tensor = response.outputs[alias]
      self.assertEqual(tensor.dtype, dtype, msg=alias)
      self.assertEqual([d.size for d in tensor.tensor_shape.dim], list(shape))
      self.assertEqual(bool(tensor.tensor_content), packed, msg=alias)
      np.testing.assert_allclose(
          tf.make_ndarray(tensor), np.asarray(values), rtol=1e-6
      )

  def assertModelSpec(
      self, spec: Any, name: str, signature_name: str, version: int
  ) -> None:
    self.assertEqual(
        (spec.name, spec.signature_name, spec.version.value),
        (name, signature_name, version),
    )


def float_tensor(
    values: Any, shape: Sequence[int] | None = None
) -> tensor_pb2.TensorProto:
  """A DT_FLOAT TensorProto in the typed field, as upstream's tests build
  them (`float_val` plus `tensor_shape`); `shape=None` leaves no dims."""
  tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
  tensor.float_val.extend(np.asarray(values, np.float32).reshape(-1).tolist())
  for size in shape if shape is not None else np.shape(values):
    tensor.tensor_shape.dim.add().size = size
  return tensor


def packed_float_tensor(values: Any) -> tensor_pb2.TensorProto:
  """A DT_FLOAT TensorProto in `tensor_content`, as tf.make_tensor_proto
  writes numpy arrays."""
  tensor = tf.make_tensor_proto(np.asarray(values, np.float32))
  assert tensor.tensor_content, "make_tensor_proto did not pack"
  return tensor


def serve(
    cls: type[FidelityTestCase],
    models: Mapping[str, tuple[Callable[[str], Any] | None, int]],
    flags: Sequence[str] = (),
    export_many: Callable[[dict[str, str]], Any] | None = None,
) -> dict[str, str]:
  """Exports `models` (name -> (exporter, version)) under a class temp dir,
  starts one server for them through a --model_config_file, as upstream's
  good_model_config does, and returns each model's version directory.

  Models whose exporter is None are written by `export_many`, which gets
  every model's version directory (for exports that share a process).
  """
  repo = cls.class_repo()
  bases, dirs = {}, {}
  for name, (exporter, version) in models.items():
    bases[name] = os.path.join(repo.root, "models", name)
    dirs[name] = os.path.join(bases[name], str(version))
    if exporter is not None:
      exporter(dirs[name])
  if export_many is not None:
    export_many(dirs)
  config = repo.write(
      "models.config",
      "model_config_list {\n"
      + "".join(
          f"  config {{ name: {n!r} base_path: {b!r}"
          " model_platform: 'tensorflow' }\n"
          for n, b in bases.items()
      )
      + "}\n",
  )
  cls.server = cls.class_server(repo, [f"--model_config_file={config}", *flags])
  cls.clients = cls.class_clients(cls.server.grpc_address)
  return dirs
