"""Differential test of the native core's header decoding against hpack.

connection.py reuses the decoded result of a repeated header block while the
HPACK dynamic table is unchanged. This drives the core with long sequences
of blocks from `hpack.Encoder` (indexed and never-indexed literals, Huffman
or not, table size updates, entries larger than the table, repeated and
replayed blocks) framed every way a client may frame them (CONTINUATION,
PADDED, PRIORITY, any split into reads), on new, refused, trailing and
closed streams, and checks each request's headers equal what a fresh
`hpack.Decoder` fed the same blocks in order (no cache) decodes: a stale
reuse would show as a request with another request's headers.
"""

from __future__ import annotations

import collections
import random

from absl.testing import absltest
import hpack
import hypothesis
from hypothesis import strategies as st

from tensorflow_serving.util.net.grpc_h2 import connection
from tensorflow_serving.util.net.grpc_h2 import events as ev
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib

LIMITS = limits_lib.GrpcLimits(max_concurrent_streams=3, reset_burst=10**6)

# Header values a gRPC client repeats (so blocks repeat and hit the cache),
# and a pool of metadata whose sizes straddle the 4096-byte table.
_PATHS = (
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
    "/tensorflow.serving.PredictionService/Predict",
    "/tensorflow.serving.ModelService/GetModelStatus",
    "/a.B/C",
)
_TIMEOUTS = ("499m", "500m", "10S", "9999m", "1S")
_VALUE_SIZES = (0, 1, 7, 100, 1000, 2000, 4000, 4064, 4065, 5000)


class _Client:
  """What a client sends: header blocks from an hpack.Encoder, framed."""

  def __init__(self, rng: random.Random):
    self.rng = rng
    self.encoder = hpack.Encoder()
    self.last_block = b""
    self.replayed = False  # whether block() last returned a replay

  def block(self) -> bytes:
    """The next block: a size update now and then, gRPC-like headers."""
    rng = self.rng
    if self.last_block and rng.random() < 0.25:
      # The same bytes again: neutral ones are reused, indexing ones insert
      # again (the encoder then adopts the decoder's table, see sync).
      self.replayed = True
      return self.last_block
    roll = rng.random()
    if roll < 0.03:
      # Two updates in one block (shrink then grow), as RFC 7541 allows.
      self.encoder.header_table_size = rng.choice((0, 100, 256))
      self.encoder.header_table_size = rng.choice((4096, 2048, 4000))
    elif roll < 0.08:
      self.encoder.header_table_size = rng.choice((0, 60, 512, 4096))
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", rng.choice(_PATHS)),
        (":authority", rng.choice(("localhost:8500", "127.0.0.1:8500"))),
        ("te", "trailers"),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-python/1.85.1 grpc-c/51.0.0 (linux; chttp2)"),
    ]
    if rng.random() < 0.6:
      headers.append(("grpc-timeout", rng.choice(_TIMEOUTS)))
    for _ in range(rng.choice((0, 0, 1, 2))):
      size = rng.choice(_VALUE_SIZES)
      headers.append(
          (f"x-m{rng.randrange(8)}", "".join(rng.choice("abc/") * size))
      )
    rng.shuffle(headers[4:])
    sensitive = rng.random() < 0.15
    block = self.encoder.encode(
        [(n, v, sensitive and n == "x-m0") for n, v in headers],
        huffman=rng.random() < 0.7,
    )
    self.last_block = block
    self.replayed = False
    return block

  def sync(self, table) -> None:
    """Adopts the decoder's table, which replayed blocks may have changed."""
    mine = self.encoder.header_table
    mine.dynamic_entries = collections.deque(table.dynamic_entries)
    mine._current_size = table._current_size  # pylint: disable=protected-access

  def frames(self, stream_id: int, block: bytes, end_stream: bool) -> bytes:
    """HEADERS (maybe PADDED, PRIORITY) and CONTINUATIONs carrying `block`."""
    rng = self.rng
    cuts = sorted(rng.sample(range(1, len(block)), min(len(block) - 1, 2)))
    if rng.random() < 0.5:
      cuts = []
    chunks = [block[i:j] for i, j in zip([0] + cuts, cuts + [len(block)])]
    flags = fr.FLAG_END_STREAM if end_stream else 0
    if len(chunks) == 1:
      flags |= fr.FLAG_END_HEADERS
    first = chunks[0]
    if rng.random() < 0.2:
      flags |= fr.FLAG_PRIORITY
      first = b"\x80\x00\x00\x03\x10" + first
    if rng.random() < 0.2:
      pad = rng.randrange(0, 20)
      flags |= fr.FLAG_PADDED
      first = bytes([pad]) + first + b"\x00" * pad
    out = [fr.frame(fr.HEADERS, flags, stream_id, first)]
    for i, chunk in enumerate(chunks[1:], 2):
      last = fr.FLAG_END_HEADERS if i == len(chunks) else 0
      out.append(fr.frame(fr.CONTINUATION, last, stream_id, chunk))
    return b"".join(out)


def _drive(seed: int, steps: int) -> int:
  """Runs one random session; returns how many requests were compared."""
  rng = random.Random(seed)
  client = _Client(rng)
  reference = hpack.Decoder(
      max_header_list_size=LIMITS.max_decoded_header_bytes
  )
  core = connection.H2Connection(LIMITS, clock=lambda: 0.0)
  core.initiate_connection(1 << 20)
  core.receive_data(fr.PREFACE + fr.settings({}))
  next_id = 1
  open_ids: list[int] = []  # requests not yet ended by the client
  live: list[int] = []  # requests not yet answered by the server
  compared = 0
  pending = b""
  expected: list[tuple[int, list]] = []
  accepted = 0  # new streams in bytes not yet delivered
  for _ in range(steps):
    block = client.block()
    table = reference.header_table
    saved = (table.maxsize, collections.deque(table.dynamic_entries))
    try:
      want = reference.decode(block, raw=True)
    except hpack.HPACKError:
      if client.replayed:  # its references are gone: send something else
        table.maxsize = saved[0]
        table.dynamic_entries = saved[1]
        table._current_size = sum(  # pylint: disable=protected-access
            hpack.table.table_entry_size(n, v) for n, v in saved[1]
        )
        continue
      want = None
    else:
      client.sync(table)
    roll = rng.random()
    closed = [i for i in range(1, next_id, 2) if i not in open_ids]
    if open_ids and roll < 0.2:  # trailers end an open request
      stream_id = open_ids.pop(rng.randrange(len(open_ids)))
      data = client.frames(stream_id, block, True)
    elif closed and roll < 0.3:  # a stream already ended or answered
      data = client.frames(rng.choice(closed[-20:]), block, True)
    else:
      stream_id = next_id
      next_id += 2
      end_stream = rng.random() < 0.7
      if core.open_streams + accepted < LIMITS.max_concurrent_streams:
        accepted += 1
        expected.append((stream_id, want))
        if not end_stream:
          open_ids.append(stream_id)
      data = client.frames(stream_id, block, end_stream)
    if rng.random() < 0.1:  # the client changes its own table size
      data += fr.settings({1: rng.choice((0, 4096, 65536))})
    pending += data
    if rng.random() < 0.3 and want is not None:
      continue  # more frames in the same read
    # Any split of the bytes into reads.
    reads = []
    while pending:
      size = rng.choice((1, 9, 17, 100, len(pending)))
      reads.append(pending[:size])
      pending = pending[size:]
    got = []
    for chunk in reads:
      got.extend(core.receive_data(chunk))
    core.data_to_send()
    failures = [e for e in got if isinstance(e, ev.ProtocolFailure)]
    if want is None:
      if not failures:
        raise AssertionError(f"seed {seed}: a bad block did not fail")
      return compared
    if failures:
      raise AssertionError(f"seed {seed}: {failures[0].error_message}")
    requests = [
        (e.stream_id, list(e.headers))
        for e in got
        if isinstance(e, ev.RequestReceived)
    ]
    if requests != expected:
      raise AssertionError(
          f"seed {seed}: decoded {requests!r}, hpack decodes {expected!r}"
      )
    compared += len(expected)
    expected = []
    accepted = 0
    # The server answers some calls, freeing their streams.
    for stream_id, _ in requests:
      live.append(stream_id)
    for stream_id in list(live):
      if rng.random() < 0.5:
        core.reset_stream(stream_id, fr.NO_ERROR)
        live.remove(stream_id)
        if stream_id in open_ids:
          open_ids.remove(stream_id)
  return compared


class HeaderDecodeTest(absltest.TestCase):

  def test_long_random_sessions_decode_as_hpack_does(self):
    compared = 0
    for seed in range(20):
      compared += _drive(seed, 400)
    # Enough requests got through to mean something.
    self.assertGreater(compared, 2000)

  @hypothesis.settings(
      max_examples=100,
      deadline=None,
      derandomize=True,
      database=None,
      suppress_health_check=list(hypothesis.HealthCheck),
  )
  @hypothesis.given(st.integers(0, 2**32), st.integers(1, 120))
  def test_any_session_decodes_as_hpack_does(self, seed, steps):
    _drive(seed, steps)

  def test_cache_is_used_for_repeated_references(self):
    # The differential test is only worth it if the cache takes part.
    core = connection.H2Connection(LIMITS, clock=lambda: 0.0)
    core.initiate_connection(1 << 20)
    core.receive_data(fr.PREFACE + fr.settings({}))
    encoder = hpack.Encoder()
    headers = [(":method", "POST"), (":path", _PATHS[0])]
    core.receive_data(fr.header_frames(1, encoder.encode(headers), True, 16384))
    repeat = encoder.encode(headers)
    core.receive_data(fr.header_frames(3, repeat, True, 16384))
    self.assertIn(repeat, core._neutral_blocks)  # pylint: disable=protected-access


if __name__ == "__main__":
  absltest.main()
