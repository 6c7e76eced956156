"""Property-based fuzzing of the sans-IO HTTP/2 cores (hypothesis).

Frame sequences mixing well-formed gRPC requests with arbitrary frames,
header blocks of random bytes, and any split of the bytes into reads: the
core never raises, reports only its own events, stops at its first
ProtocolFailure, writes only whole frames, and keeps what it holds bounded.
A fixed example budget and derandomized runs keep it fast and repeatable.
"""

from __future__ import annotations

from absl.testing import absltest
from absl.testing import parameterized
import hypothesis
from hypothesis import strategies as st

from tensorflow_serving.util.net.grpc_h2 import connection
from tensorflow_serving.util.net.grpc_h2 import events as ev
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import h2_core
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib

FUZZ = hypothesis.settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
LIMITS = limits_lib.GrpcLimits(
    max_concurrent_streams=4, max_metadata_size=2048, reset_burst=20
)
REQUEST = fr.request_header_block("/a.B/C", "h")
KNOWN = (
    ev.RequestReceived,
    ev.DataReceived,
    ev.StreamEnded,
    ev.StreamReset,
    ev.PingAckReceived,
    ev.ConnectionTerminated,
    ev.ProtocolFailure,
)

stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 9, 11, 2**31 - 1])
payloads = st.binary(max_size=64)
raw_frame = st.builds(
    fr.frame, st.integers(0, 12), st.integers(0, 255), stream_ids, payloads
)
good_frame = st.one_of(
    st.builds(
        lambda s, end: fr.header_frames(s, REQUEST, end, 16384),
        stream_ids,
        st.booleans(),
    ),
    st.builds(
        lambda s, body, end: fr.frame(
            fr.DATA, fr.FLAG_END_STREAM if end else 0, s, fr.grpc_message(body)
        ),
        stream_ids,
        payloads,
        st.booleans(),
    ),
    st.builds(
        lambda s, block: fr.frame(fr.HEADERS, fr.FLAG_END_HEADERS, s, block),
        stream_ids,
        st.binary(max_size=80),
    ),
    st.builds(
        lambda s, block: fr.frame(
            fr.CONTINUATION, fr.FLAG_END_HEADERS, s, block
        ),
        stream_ids,
        st.binary(max_size=80),
    ),
    st.builds(
        lambda k, v: fr.settings({k: v}),
        st.integers(0, 8),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(fr.window_update, stream_ids, st.integers(0, 2**31 - 1)),
    st.builds(fr.rst_stream, stream_ids, st.integers(0, 13)),
    st.builds(
        lambda d: fr.frame(fr.PING, 0, 0, d), st.binary(min_size=8, max_size=8)
    ),
)
sequences = st.lists(st.one_of(good_frame, raw_frame), max_size=40)
splits = st.lists(st.integers(1, 200), max_size=20)


def _feed(core, data: bytes, cuts: list[int]) -> list:
  out = []
  pos = 0
  for cut in cuts + [len(data)]:
    out += core.receive_data(data[pos : pos + cut])
    pos += cut
    if pos >= len(data):
      break
  if pos < len(data):
    out += core.receive_data(data[pos:])
  return out


def _whole_frames(data: bytes) -> bool:
  pos = 0
  while pos < len(data):
    if len(data) - pos < 9:
      return False
    high, low, _, _, _ = fr.HEADER.unpack_from(data, pos)
    pos += 9 + (high << 16 | low)
  return pos == len(data)


class FuzzTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("native", connection.H2Connection), ("h2", h2_core.H2Core)
  )
  def test_frame_sequences(self, core_class):
    @FUZZ
    @hypothesis.given(frames=sequences, cuts=splits, answer=st.booleans())
    def run(frames, cuts, answer):
      core = core_class(LIMITS)
      core.initiate_connection(1 << 20)
      self.assertTrue(_whole_frames(core.data_to_send()))
      data = fr.PREFACE + b"".join(frames)
      events = _feed(core, data, cuts)
      for i, event in enumerate(events):
        self.assertIsInstance(event, KNOWN)
        if isinstance(event, ev.ProtocolFailure):
          self.assertEqual(i, len(events) - 1)
          self.assertTrue(core.closed)
        elif isinstance(event, ev.DataReceived):
          core.acknowledge_received_data(
              event.flow_controlled_length, event.stream_id
          )
        elif isinstance(event, ev.RequestReceived) and answer:
          core.send_response(
              event.stream_id, ((b":status", b"200"),), b"x" * 100, ()
          )
      self.assertLessEqual(core.open_streams, LIMITS.max_concurrent_streams)
      self.assertGreaterEqual(core.pending_bytes, 0)
      self.assertTrue(_whole_frames(core.data_to_send()))
      if core_class is connection.H2Connection:
        self.assertLess(len(core._buffer), 16384 + 9)  # pylint: disable=protected-access

    run()

  @parameterized.named_parameters(
      ("native", connection.H2Connection), ("h2", h2_core.H2Core)
  )
  def test_random_header_blocks(self, core_class):
    @FUZZ
    @hypothesis.given(blocks=st.lists(st.binary(max_size=300), max_size=8))
    def run(blocks):
      core = core_class(LIMITS)
      core.initiate_connection(1 << 20)
      data = fr.PREFACE + b"".join(
          fr.header_frames(2 * i + 1, REQUEST + block, True, 100)
          for i, block in enumerate(blocks)
      )
      for event in core.receive_data(data):
        self.assertIsInstance(event, KNOWN)
        if isinstance(event, ev.RequestReceived):
          self.assertLessEqual(
              event.headers_size, LIMITS.max_decoded_header_bytes
          )

    run()


if __name__ == "__main__":
  absltest.main()
