"""A 1 GiB chunked body of whitespace on default flags harms no one.

The real tensorflow_model_server, started with nothing but its model: one
client streams a gigabyte of spaces to `:predict` in chunks (alone, inside
a valid request, inside an invalid one) while legit REST and gRPC Predict
calls go out every 50 ms with a 2 s deadline. The body must get the answer
upstream gives it, every legit call must be answered in time, and the
server's RSS may grow by the body it holds plus slack, well within the
documented 4 GiB per API, and must come back once the body is answered (a
body kept past its answer stacks with the next). Four bodies of 256 MiB at
once are held to the same bound.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import tempfile
import threading
import time

from absl.testing import absltest
import grpc

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.test_util import model_server
from tensorflow_serving.tools.robustness import harness

BODY_BYTES = 1 << 30
CHUNK_BYTES = 1 << 20
# The default REST budget (docs/hardening.md): what the server may hold for
# REST bodies and their decoding, all connections together.
DOCUMENTED_BOUND = 4 << 30
# What this one body may cost: itself (held while parsed), plus slack for
# the interpreter and the legit calls.
EXPECTED_BOUND = BODY_BYTES + (512 << 20)
# What may stay once the body is answered (allocator caches, the legit
# calls' buffers): far less than any body.
LEFT_AFTER_BOUND = 256 << 20
LEGIT_DEADLINE_S = 2.0


class _Probe:
  """Legit REST and gRPC Predict calls every 50 ms, each on its own thread."""

  def __init__(self, server: model_server.ModelServer):
    self._server = server
    self._stop = threading.Event()
    self.calls = 0
    self.failures: list[str] = []
    self.slowest = 0.0
    self._threads = [
        threading.Thread(target=self._loop, args=(self._grpc,), daemon=True),
        threading.Thread(target=self._loop, args=(self._rest,), daemon=True),
    ]

  def __enter__(self) -> _Probe:
    for thread in self._threads:
      thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    for thread in self._threads:
      thread.join(10)

  def _loop(self, call) -> None:
    state: dict = {}
    while not self._stop.is_set():
      started = time.monotonic()
      try:
        error = call(state)
      except (OSError, http.client.HTTPException) as exc:
        error = f"rest: {type(exc).__name__} {exc}"
        state.pop("conn").close()
      except grpc.RpcError as exc:
        error = f"grpc: {exc.code().name} {exc.details()}"
      self.calls += 1
      self.slowest = max(self.slowest, time.monotonic() - started)
      if error:
        self.failures.append(error)
      self._stop.wait(0.05)
    if "channel" in state:
      state["channel"].close()
    if "conn" in state:
      state["conn"].close()

  def _grpc(self, state: dict) -> str | None:
    if "stub" not in state:
      state["channel"] = self._server.channel()
      state["stub"] = prediction_service_pb2_grpc.PredictionServiceStub(
          state["channel"]
      )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.inputs["x"].float_val.append(2.0)
    reply = state["stub"].Predict(request, timeout=LEGIT_DEADLINE_S)
    if list(reply.outputs["y"].float_val) != [3.0]:
      return f"grpc: wrong answer {reply}"
    return None

  def _rest(self, state: dict) -> str | None:
    if "conn" not in state:
      state["conn"] = http.client.HTTPConnection(
          "127.0.0.1", self._server.rest_port, timeout=LEGIT_DEADLINE_S
      )
    conn = state["conn"]
    conn.request("POST", "/v1/models/m:predict", body=b'{"instances": [2.0]}')
    reply = conn.getresponse()
    body = reply.read()
    if reply.status != 200 or json.loads(body) != {"predictions": [3.0]}:
      return f"rest: {reply.status} {body[:200]!r}"
    return None


def _post_chunked(
    port: int, head: bytes, tail: bytes, size: int = BODY_BYTES
) -> tuple[int, bytes]:
  """Streams `head`, `size` bytes of spaces and `tail`, chunked.

  Returns the answer's status and body.
  """
  chunk = b"%x\r\n%s\r\n" % (CHUNK_BYTES, b" " * CHUNK_BYTES)
  with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
    sock.sendall(
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    if head:
      sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
    for _ in range(size // CHUNK_BYTES):
      sock.sendall(chunk)
    if tail:
      sock.sendall(b"%x\r\n%s\r\n" % (len(tail), tail))
    sock.sendall(b"0\r\n\r\n")
    reader = sock.makefile("rb")
    status_line = reader.readline()
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
      name, _, value = line.partition(b":")
      if name.strip().lower() == b"content-length":
        length = int(value)
    return int(status_line.split()[1]), reader.read(length)


class LargeBodyTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    base = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    half_plus_two.export_half_plus_two_tf1(os.path.join(base, "1"))
    cls.server = model_server.start_server(
        ["--model_name=m", f"--model_base_path={base}"]
    )
    cls.server.wait_until_serving()
    # Growth counts from here, before any attack: what one attack left
    # behind (freed, but kept by the allocator) counts in the next.
    cls.rss_at_start = harness.rss_bytes(cls.server.proc.pid)

  @classmethod
  def tearDownClass(cls):
    code = cls.server.stop()
    super().tearDownClass()
    assert code == 0, cls.server.log()[-2000:]

  def attack(
      self, name: str, head: bytes, tail: bytes, clients: int = 1
  ) -> list[tuple[int, dict]]:
    """Sends the padded body under legit load; checks what others saw.

    `clients` send one body each at once, BODY_BYTES in all.
    """
    pid = self.server.proc.pid
    rss_before = self.rss_at_start
    peak = harness.rss_bytes(pid)
    sampling = threading.Event()

    def sample():
      nonlocal peak
      while not sampling.is_set():
        with contextlib.suppress(OSError):
          peak = max(peak, harness.rss_bytes(pid))
        sampling.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    answers: list[tuple[int, bytes]] = []

    def send():
      answers.append(
          _post_chunked(
              self.server.rest_port, head, tail, BODY_BYTES // clients
          )
      )

    senders = [threading.Thread(target=send) for _ in range(clients)]
    with _Probe(self.server) as probe:
      time.sleep(0.5)
      for sender in senders:
        sender.start()
      for sender in senders:
        sender.join()
      time.sleep(0.5)
    took = time.monotonic() - started
    sampling.set()
    sampler.join()
    growth = peak - rss_before
    left = harness.rss_bytes(pid) - rss_before
    print(
        f"{name}: {sorted(status for status, _ in answers)} in {took:.1f} s, "
        f"RSS +{growth / 2**20:.0f} MiB at the peak, "
        f"+{left / 2**20:.0f} MiB after, legit "
        f"{len(probe.failures)}/{probe.calls} failed, slowest "
        f"{probe.slowest * 1000:.0f} ms",
        flush=True,
    )
    self.assertEqual(probe.failures, [])
    self.assertGreater(probe.calls, 10)
    self.assertLess(probe.slowest, LEGIT_DEADLINE_S)
    self.assertLess(growth, DOCUMENTED_BOUND)
    self.assertLess(growth, EXPECTED_BOUND)
    self.assertLess(left, LEFT_AFTER_BOUND)
    self.assertLen(answers, clients)
    return [(status, json.loads(body)) for status, body in answers]

  def test_gigabyte_of_whitespace(self):
    [answer] = self.attack("1 GiB of spaces", b"", b"")
    self.assertEqual(
        answer,
        (
            400,
            {
                "error": (
                    "JSON Parse error: The document is empty. at offset: "
                    f"{BODY_BYTES}"
                )
            },
        ),
    )

  def test_gigabyte_of_whitespace_inside_a_valid_request(self):
    # Every parser would walk it with the GIL held; squeezed first, it is
    # an ordinary request.
    [answer] = self.attack(
        "1 GiB of spaces inside", b'{"instances": [', b"2.0]}"
    )
    self.assertEqual(answer, (200, {"predictions": [3.0]}))

  def test_gigabyte_of_whitespace_inside_an_invalid_request(self):
    # The error path reparses with rapidjson for upstream's words: on the
    # squeezed body, its offset mapped back.
    [(status, doc)] = self.attack("1 GiB of spaces, then }", b"{", b"}x")
    self.assertEqual(status, 400)
    self.assertEqual(
        doc["error"],
        "JSON Parse error: The document root must not be followed by other "
        f"values. at offset: {BODY_BYTES + 2}",
    )

  def test_four_quarter_gigabyte_bodies_at_once(self):
    # Each is held whole until parsed, all four together: the budget counts
    # them, and all must be answered and gone after.
    answers = self.attack(
        "4 x 256 MiB of spaces inside", b'{"instances": [', b"2.0]}", 4
    )
    self.assertEqual(answers, [(200, {"predictions": [3.0]})] * 4)


if __name__ == "__main__":
  absltest.main()
