"""Property-based fuzzing of the sans-IO HTTP/1.1 core (hypothesis).

Request sequences (well-formed ones, chunked bodies with random chunking
and extensions, smuggling-shaped headers, random bytes), split into any
reads: the core never raises, never hands out a body past the limit, stops
after its first refusal, and returns every budget byte it took.
"""

from __future__ import annotations

from absl.testing import absltest
import hypothesis
from hypothesis import strategies as st

from tensorflow_serving.util.net import budget as budget_lib
from tensorflow_serving.util.net.http1 import connection

FUZZ = hypothesis.settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
LIMITS = connection.Http1Limits(
    max_url_bytes=200, max_header_bytes=400, max_body_bytes=300
)

tokens = st.sampled_from(
    [b"GET", b"POST", b"HEAD", b"OPTIONS", b"PUT", b"G\x00T", b""]
)
targets = st.one_of(
    st.sampled_from([b"/", b"/v1/models/m:predict", b"*", b"http://h/x?q=1"]),
    st.binary(max_size=250),
)
header_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Content-Length: 5",
                b"Content-Length: 5, 6",
                b"Content-Length: -1",
                b"Transfer-Encoding: chunked",
                b"Transfer-Encoding: gzip, chunked",
                b"Transfer-Encoding : chunked",
                b"Connection: close",
                b"Expect: 100-continue",
                b"Upgrade: h2c",
                b"Connection: Upgrade",
            ]
        ),
        st.builds(
            lambda k, v: k + b": " + v,
            st.binary(min_size=1, max_size=20),
            st.binary(max_size=300),
        ),
    ),
    max_size=6,
)


def _chunked(parts: list[bytes], ext: bool) -> bytes:
  out = b""
  for part in parts:
    out += b"%x%s\r\n%s\r\n" % (len(part), b";x=y" if ext else b"", part)
  return out + b"0\r\n\r\n"


requests = st.one_of(
    st.builds(
        lambda m, t, h, b: m
        + b" "
        + t
        + b" HTTP/1.1\r\n"
        + b"".join(line + b"\r\n" for line in h)
        + b"\r\n"
        + b,
        tokens,
        targets,
        header_lines,
        st.binary(max_size=400),
    ),
    st.builds(
        lambda parts, ext: b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n" + _chunked(parts, ext),
        st.lists(st.binary(min_size=1, max_size=120), max_size=6),
        st.booleans(),
    ),
    st.binary(max_size=200),
)


class Http1FuzzTest(absltest.TestCase):

  @FUZZ
  @hypothesis.given(
      stream=st.lists(requests, max_size=6),
      cuts=st.lists(st.integers(1, 64), max_size=30),
  )
  def test_request_streams(self, stream, cuts):
    budget = budget_lib.Budget(10_000)
    core = connection.Http1Connection(LIMITS, budget, clock=lambda: 0.0)
    data = b"".join(stream)
    events = []
    pos = 0
    for cut in cuts + [len(data)]:
      events += core.receive_data(data[pos : pos + cut])
      pos += cut
    events += core.receive_data(data[pos:])
    for i, event in enumerate(events):
      if isinstance(event, connection.Rejected):
        self.assertIn(event.status, (400, 413, 414, 431))
        self.assertEqual(i, len(events) - 1)
        self.assertTrue(core.closed)
      else:
        self.assertIsInstance(event, connection.Request)
        self.assertLessEqual(len(event.body), LIMITS.max_body_bytes)
        self.assertLessEqual(len(event.path.encode()), 4 * LIMITS.max_url_bytes)
        core.release(event)
    core.close()
    self.assertEqual(budget.used, 0)


if __name__ == "__main__":
  absltest.main()
