"""The sans-IO HTTP/2 cores (ours and h2's) byte for byte, with no sockets.

Each case is a client's bytes in and the core's events and frames out: the
limits and abuse budgets of limits.py, and flow control both ways.
"""

from __future__ import annotations

from absl import logging
from absl.testing import absltest
from absl.testing import parameterized
import hpack

from tensorflow_serving.util.net.grpc_h2 import connection
from tensorflow_serving.util.net.grpc_h2 import events as ev
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import h2_core
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib

CORES = (("native", connection.H2Connection), ("h2", h2_core.H2Core))
REQUEST = fr.request_header_block("/test.Echo/Echo", "localhost")


class FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self) -> float:
    return self.now


def parse_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
  """(type, flags, stream id, payload) of each frame in `data`."""
  out = []
  pos = 0
  while pos + 9 <= len(data):
    high, low, kind, flags, stream_id = fr.HEADER.unpack_from(data, pos)
    length = high << 16 | low
    out.append((kind, flags, stream_id, data[pos + 9 : pos + 9 + length]))
    pos += 9 + length
  return out


def goaway_code(data: bytes) -> int | None:
  for kind, _, _, payload in parse_frames(data):
    if kind == fr.GOAWAY:
      return fr.U32.unpack_from(payload, 4)[0]
  return None


class CoreTest(parameterized.TestCase):

  def make(self, core_class, **limits):
    self.clock = FakeClock()
    core = core_class(limits_lib.GrpcLimits(**limits), clock=self.clock)
    core.initiate_connection(1 << 20)
    self.initial = core.data_to_send()
    core.receive_data(fr.PREFACE + fr.settings({}))
    core.data_to_send()
    return core

  @parameterized.named_parameters(*CORES)
  def test_settings_advertise_the_limits(self, core_class):
    self.make(core_class, max_concurrent_streams=7)
    (kind, _, _, payload), *_ = parse_frames(self.initial)
    self.assertEqual(kind, fr.SETTINGS)
    pairs = dict(
        fr.SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)
    )
    self.assertEqual(pairs[fr.SETTINGS_MAX_CONCURRENT_STREAMS], 7)
    self.assertIn(fr.SETTINGS_MAX_HEADER_LIST_SIZE, pairs)

  @parameterized.named_parameters(*CORES)
  def test_request_and_response(self, core_class):
    core = self.make(core_class)
    events = core.receive_data(
        fr.header_frames(1, REQUEST, False, 16384)
        + fr.frame(fr.DATA, fr.FLAG_END_STREAM, 1, fr.grpc_message(b"hi"))
    )
    kinds = [type(e) for e in events]
    self.assertEqual(kinds, [ev.RequestReceived, ev.DataReceived])
    self.assertTrue(events[1].end_stream)
    self.assertEqual(events[1].data, fr.grpc_message(b"hi"))
    headers = dict(events[0].headers)
    self.assertEqual(headers[b":path"], b"/test.Echo/Echo")
    core.send_response(
        1,
        ((b":status", b"200"),),
        b"payload",
        ((b"grpc-status", b"0"),),
    )
    frames = parse_frames(core.data_to_send())
    self.assertEqual([k for k, *_ in frames], [fr.HEADERS, fr.DATA, fr.HEADERS])
    self.assertEqual(frames[1][3], b"payload")
    self.assertTrue(frames[2][1] & fr.FLAG_END_STREAM)

  @parameterized.named_parameters(*CORES)
  def test_answer_waits_for_window_and_is_counted(self, core_class):
    core = self.make(core_class)
    core.receive_data(
        fr.settings({fr.SETTINGS_INITIAL_WINDOW_SIZE: 10})
        + fr.header_frames(1, REQUEST, True, 16384)
    )
    core.data_to_send()
    core.send_response(1, ((b":status", b"200"),), b"x" * 25, ())
    sent = [f for f in parse_frames(core.data_to_send()) if f[0] == fr.DATA]
    self.assertEqual(sum(len(f[3]) for f in sent), 10)
    self.assertEqual(core.pending_bytes, 15)
    core.receive_data(fr.window_update(1, 100))
    sent = [f for f in parse_frames(core.data_to_send()) if f[0] == fr.DATA]
    self.assertEqual(sum(len(f[3]) for f in sent), 15)
    self.assertEqual(core.pending_bytes, 0)

  @parameterized.named_parameters(*CORES)
  def test_continuation_flood_is_capped(self, core_class):
    core = self.make(core_class)
    events = core.receive_data(fr.frame(fr.HEADERS, 0, 1, REQUEST))
    chunk = fr.frame(fr.CONTINUATION, 0, 1, b"\x00" * 16000)
    for _ in range(200):  # 3.2 MB if nothing stopped it
      events += core.receive_data(chunk)
      if core.closed:
        break
    self.assertIsInstance(events[-1], ev.ProtocolFailure)
    self.assertIn(
        goaway_code(core.data_to_send()),
        (fr.ENHANCE_YOUR_CALM, fr.PROTOCOL_ERROR, fr.COMPRESSION_ERROR),
    )

  def test_native_refuses_a_big_block_before_decoding(self):
    core = self.make(connection.H2Connection)
    block = b"\x00\x01a\x01b" * 20000  # 100 KB of tiny literals
    events = core.receive_data(fr.header_frames(1, block, True, 16384))
    self.assertIsInstance(events[-1], ev.ProtocolFailure)
    self.assertEqual(events[-1].error_code, fr.ENHANCE_YOUR_CALM)
    self.assertEqual(goaway_code(core.data_to_send()), fr.ENHANCE_YOUR_CALM)

  @parameterized.named_parameters(*CORES)
  def test_indexed_expansion_is_capped(self, core_class):
    core = self.make(core_class)
    # One 4 KB entry in the dynamic table, then many one-byte references.
    encoder = hpack.Encoder()
    first = encoder.encode([(b"x-big", b"v" * 4000)])
    block = REQUEST + first + b"\xbe" * 200
    events = core.receive_data(fr.header_frames(1, block, True, 16384))
    self.assertIsInstance(events[-1], ev.ProtocolFailure)

  @parameterized.named_parameters(*CORES)
  def test_data_beyond_the_window_is_a_flow_control_error(self, core_class):
    core = self.make(core_class)
    events = core.receive_data(fr.header_frames(1, REQUEST, False, 16384))
    chunk = fr.frame(fr.DATA, 0, 1, b"x" * 16384)
    for _ in range(80):  # 1.3 MB against a 1 MiB window, nothing acked
      events += core.receive_data(chunk)
      if core.closed:
        break
    self.assertIsInstance(events[-1], ev.ProtocolFailure)
    self.assertEqual(goaway_code(core.data_to_send()), fr.FLOW_CONTROL_ERROR)

  @parameterized.named_parameters(*CORES)
  def test_acknowledged_data_reopens_the_window(self, core_class):
    core = self.make(core_class)
    core.receive_data(fr.header_frames(1, REQUEST, False, 16384))
    total = 0
    for _ in range(80):
      for event in core.receive_data(fr.frame(fr.DATA, 0, 1, b"x" * 16384)):
        self.assertIsInstance(event, ev.DataReceived)
        core.acknowledge_received_data(event.flow_controlled_length, 1)
        total += len(event.data)
    self.assertFalse(core.closed)
    self.assertEqual(total, 80 * 16384)

  @parameterized.named_parameters(*CORES)
  def test_streams_past_the_limit_are_refused(self, core_class):
    core = self.make(core_class, max_concurrent_streams=3)
    events = []
    for stream_id in (1, 3, 5, 7):
      events += core.receive_data(
          fr.header_frames(stream_id, REQUEST, False, 16384)
      )
    self.assertEqual(
        [e.stream_id for e in events if isinstance(e, ev.RequestReceived)],
        [1, 3, 5],
    )
    out = core.data_to_send()
    resets = [s for k, _, s, _ in parse_frames(out) if k == fr.RST_STREAM]
    if core_class is h2_core.H2Core and core.closed:
      # h2 treats a stream past its acknowledged limit as a connection error.
      self.assertEqual(goaway_code(out), fr.PROTOCOL_ERROR)
    else:
      self.assertIn(7, resets)

  @parameterized.named_parameters(*CORES)
  def test_rapid_reset_closes_the_connection(self, core_class):
    core = self.make(core_class, reset_burst=50, resets_per_s=10)
    failure = None
    for i in range(200):
      stream_id = 2 * i + 1
      for event in core.receive_data(
          fr.header_frames(stream_id, REQUEST, False, 16384)
          + fr.rst_stream(stream_id, fr.CANCEL)
      ):
        if isinstance(event, ev.ProtocolFailure):
          failure = event
      if failure:
        break
    self.assertIsNotNone(failure)
    self.assertLess(i, 60)
    self.assertEqual(goaway_code(core.data_to_send()), fr.ENHANCE_YOUR_CALM)

  @parameterized.named_parameters(*CORES)
  def test_resets_at_a_steady_rate_are_fine(self, core_class):
    core = self.make(core_class, reset_burst=50, resets_per_s=100)
    for i in range(500):
      self.clock.now += 0.02  # 50 resets a second
      stream_id = 2 * i + 1
      core.receive_data(
          fr.header_frames(stream_id, REQUEST, False, 16384)
          + fr.rst_stream(stream_id, fr.CANCEL)
      )
    self.assertFalse(core.closed)

  @parameterized.named_parameters(*CORES)
  def test_ping_flood_closes_the_connection(self, core_class):
    core = self.make(core_class, control_burst=20, control_frames_per_s=1)
    events = []
    for i in range(100):
      events += core.receive_data(fr.frame(fr.PING, 0, 0, b"%08d" % i))
      if core.closed:
        break
    self.assertIsInstance(events[-1], ev.ProtocolFailure)
    self.assertEqual(goaway_code(core.data_to_send()), fr.ENHANCE_YOUR_CALM)

  @parameterized.named_parameters(*CORES)
  def test_settings_flood_closes_the_connection(self, core_class):
    core = self.make(core_class, control_burst=20, control_frames_per_s=1)
    events = []
    for _ in range(100):
      events += core.receive_data(fr.settings({fr.SETTINGS_ENABLE_PUSH: 0}))
      if core.closed:
        break
    self.assertIsInstance(events[-1], ev.ProtocolFailure)

  def test_pings_between_answers_cost_nothing(self):
    core = self.make(
        connection.H2Connection, control_burst=5, control_frames_per_s=0.001
    )
    for i in range(50):
      stream_id = 2 * i + 1
      core.receive_data(fr.header_frames(stream_id, REQUEST, True, 16384))
      core.send_response(stream_id, ((b":status", b"200"),), b"", ())
      core.receive_data(fr.frame(fr.PING, 0, 0, b"12345678"))
    self.assertFalse(core.closed)

  @parameterized.named_parameters(*CORES)
  def test_not_http2_fails(self, core_class):
    core = core_class(limits_lib.GrpcLimits())
    core.initiate_connection(1 << 20)
    events = core.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    self.assertIsInstance(events[-1], ev.ProtocolFailure)


class ChannelArgumentsTest(absltest.TestCase):

  def test_grpc_meanings_of_negative_and_zero(self):
    limits = limits_lib.from_channel_arguments(
        {
            "grpc.max_receive_message_length": -1,
            "grpc.max_concurrent_streams": 0,
            "grpc.keepalive_time_ms": 0,
            "grpc.keepalive_timeout_ms": 0,
            "grpc.max_connection_idle_ms": 1000,
            "grpc.tf_serving.max_connection_buffer_bytes": 1 << 20,
        }
    )
    self.assertEqual(limits.max_receive_message_length, limits_lib.INT_MAX)
    self.assertEqual(limits.max_concurrent_streams, limits_lib.INT_MAX)
    self.assertIsNone(limits.keepalive_time_ms)
    self.assertEqual(limits.keepalive_timeout_ms, 20_000)
    self.assertEqual(limits.max_connection_idle_ms, 1000)
    # A message must fit the budget; an inflated one, half of it.
    self.assertEqual(limits.max_message_bytes, 1 << 20)
    self.assertEqual(limits.max_inflated_bytes, 1 << 19)

  def test_defaults_match_upstream_and_grpc(self):
    limits = limits_lib.GrpcLimits()
    self.assertEqual(limits.max_receive_message_length, 2**31 - 1)
    self.assertEqual(limits.max_metadata_size, 16 << 10)
    self.assertEqual(limits.keepalive_time_ms, 2 * 3600 * 1000)
    self.assertEqual(limits.keepalive_timeout_ms, 20_000)
    self.assertEqual(limits.handshake_timeout_ms, 120_000)
    # The budgets admit every message upstream's server admits, compressed
    # or not: the defaults refuse nothing upstream answers.
    self.assertEqual(limits.max_message_bytes, 2**31 - 1)
    self.assertEqual(limits.max_inflated_bytes, 2**31 - 1)


class HeaderCacheTest(absltest.TestCase):
  """Repeated blocks skip HPACK only while they decode the same."""

  def test_repeated_blocks_decode_as_hpack_would(self):
    core = connection.H2Connection(limits_lib.GrpcLimits(), clock=FakeClock())
    core.initiate_connection(1 << 20)
    core.receive_data(fr.PREFACE + fr.settings({}))
    core.data_to_send()
    encoder = hpack.Encoder()
    decoder = hpack.Decoder()
    paths = []
    stream_id = 1
    # grpc C-core style: the first block indexes headers, later ones refer
    # to them; then a new header is indexed, and the reference-only block
    # that follows must see it.
    for headers in (
        [(":method", "POST"), (":path", "/a.B/C"), ("x-k", "1")],
        [(":method", "POST"), (":path", "/a.B/C"), ("x-k", "1")],
        [(":method", "POST"), (":path", "/a.B/C"), ("x-k", "1")],
        [(":method", "POST"), (":path", "/a.B/D"), ("x-k", "2")],
        [(":method", "POST"), (":path", "/a.B/D"), ("x-k", "2")],
        [(":method", "POST"), (":path", "/a.B/C"), ("x-k", "1")],
    ):
      block = encoder.encode(
          headers
          + [
              (":scheme", "http"),
              (":authority", "h"),
              ("content-type", "application/grpc"),
          ]
      )
      want = decoder.decode(block, raw=True)
      events = core.receive_data(
          fr.header_frames(stream_id, block, True, 16384)
      )
      got = [e for e in events if isinstance(e, ev.RequestReceived)]
      self.assertLen(got, 1)
      self.assertEqual(list(got[0].headers), list(want))
      paths.append(dict(want)[b":path"])
      stream_id += 2
    self.assertEqual(paths[-1], b"/a.B/C")
    # The reference-only blocks are reused (no pure-Python decode).
    self.assertNotEmpty(core._neutral_blocks)  # pylint: disable=protected-access

  def test_a_path_without_slash_is_logged_once_with_its_block(self):
    core = connection.H2Connection(limits_lib.GrpcLimits(), clock=FakeClock())
    core.initiate_connection(1 << 20)
    core.receive_data(fr.PREFACE + fr.settings({}))
    encoder = hpack.Encoder()
    block = encoder.encode([(":method", "POST"), (":path", "a.B/C")])
    with self.assertLogs(level="WARNING") as logs:
      events = core.receive_data(fr.header_frames(1, block, True, 16384))
      # Another connection-wide bad block logs nothing more.
      core.receive_data(
          fr.header_frames(3, encoder.encode([(":path", "d.E/F")]), True, 16384)
      )
      logging.warning("end of test")
    # The request still goes on (to its UNIMPLEMENTED answer).
    self.assertEqual(dict(events[0].headers)[b":path"], b"a.B/C")
    self.assertLen(logs.output, 2)
    self.assertIn(block.hex(), logs.output[0])
    self.assertIn("b':path', b'a.B/C'", logs.output[0])

  def test_a_path_with_slash_logs_nothing(self):
    core = connection.H2Connection(limits_lib.GrpcLimits(), clock=FakeClock())
    core.initiate_connection(1 << 20)
    core.receive_data(fr.PREFACE + fr.settings({}))
    with self.assertNoLogs(level="WARNING"):
      core.receive_data(fr.header_frames(1, REQUEST, True, 16384))


if __name__ == "__main__":
  absltest.main()
