"""Collapses runs of JSON whitespace outside strings, with the GIL released.

Every JSON parser here walks whitespace with the GIL held (orjson and
rapidjson ~1 s per 256 MiB each, and the error path runs both), so a body
padded with a gigabyte of spaces anywhere between its tokens stalled every
other request for many seconds. Whitespace between tokens means the same
however long the run, so a body that is mostly whitespace is first squeezed
with numpy in steps (each run outside strings kept as its first byte) and
the parsers see the short result. Squeezing never removes a run entirely
(`1 2` must stay two tokens) and never touches bytes inside strings, so a
document parses to the same values, and fails at the same token, either
way; `original_offset` maps a parse error's offset back for the message.

A quote ends a string unless an odd run of backslashes precedes it; quotes,
backslashes and whitespace are ASCII and never occur inside a UTF-8
sequence, so the scan works on bytes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Bodies smaller than this are parsed as they are (well under a millisecond
# of whitespace).
MIN_BYTES = 1 << 20
# Squeezed when at least this share of the body is whitespace (or control
# characters): then the copy is at most half the body.
MIN_SPACE_SHARE = 0.5
# A step's masks take ~5x the step while it is squeezed, per decoding
# thread: 4 MiB steps kept that to ~21 MiB (81 MiB at 16 MiB) and were as
# fast or faster.
STEP_BYTES = 4 << 20
# Backslashes walked back from quotes, at most, before squeezing is given
# up for the body (parsed as it is): the walk is Python, a crafted body of
# long backslash runs must not make it slower than the parse it saves.
MAX_BACKSLASH_WALK = 1 << 20
_QUOTE, _BACKSLASH = 0x22, 0x5C


class _BackslashBudgetError(Exception):
  pass


@dataclasses.dataclass(frozen=True)
class _Step:
  start: int
  end: int
  kept_before: int  # bytes of the squeezed body before this step's
  in_string: bool  # at the step's first byte
  after_space: bool  # the byte before the step is whitespace outside strings
  blank: bool = False  # spaces alone, outside strings (the common padding)


@dataclasses.dataclass(frozen=True)
class Squeezed:
  """The squeezed body, and how to find its bytes in the original."""

  body: bytes
  original_size: int
  _source: np.ndarray
  _steps: tuple[_Step, ...]

  def original_offset(self, offset: int) -> int:
    """Where byte `offset` of `body` is in the original (its end: its end)."""
    if offset >= len(self.body):
      return self.original_size
    for step in reversed(self._steps):
      if step.kept_before <= offset:
        if step.blank:  # It kept its first space at most.
          return step.start
        keep, _, _ = _keep_mask(self._source, step, [-1])
        return step.start + int(np.flatnonzero(keep)[offset - step.kept_before])
    return offset


def squeeze(
    body: bytes | bytearray | str,
    min_bytes: int = MIN_BYTES,
    step_bytes: int = STEP_BYTES,
    min_space_share: float = MIN_SPACE_SHARE,
) -> Squeezed | None:
  """`body` with whitespace runs collapsed, or None when not worth it."""
  if len(body) < min_bytes or not body or isinstance(body, str):
    return None
  data = np.frombuffer(body, np.uint8)
  spaces = 0
  for start in range(0, data.size, step_bytes):
    chunk = data[start : start + step_bytes]
    if chunk.max() <= 0x20:
      spaces += chunk.size
    else:
      spaces += int(np.count_nonzero(chunk <= 0x20))
  if spaces < min_space_share * data.size:
    return None
  pieces = []
  steps = []
  kept = 0
  in_string = after_space = False
  walk_left = [MAX_BACKSLASH_WALK]
  for start in range(0, data.size, step_bytes):
    end = min(start + step_bytes, data.size)
    chunk = data[start:end]
    if not in_string and chunk.min() == 0x20 and chunk.max() == 0x20:
      # Spaces alone: one at most (none after whitespace); no mask needed.
      steps.append(_Step(start, end, kept, False, after_space, blank=True))
      if not after_space:
        pieces.append(b" ")
        kept += 1
      after_space = True
      continue
    step = _Step(start, end, kept, in_string, after_space)
    try:
      keep, in_string, after_space = _keep_mask(data, step, walk_left)
    except _BackslashBudgetError:
      return None
    piece = chunk[keep]
    pieces.append(piece.tobytes())
    steps.append(step)
    kept += piece.size
  return Squeezed(b"".join(pieces), data.size, data, tuple(steps))


def _keep_mask(
    data: np.ndarray, step: _Step, walk_left: list[int]
) -> tuple[np.ndarray, bool, bool]:
  """The bytes of one step to keep; the string and space state after it.

  `walk_left` is the backslash walk still allowed (negative: unbounded).
  """
  chunk = data[step.start : step.end]
  quotes = np.flatnonzero(chunk == _QUOTE)
  if not quotes.size:
    if step.in_string:  # All of it inside one string: kept as is.
      return np.ones(chunk.size, bool), True, False
    space = _spaces(chunk)
    return _first_of_runs(space, step.after_space), False, bool(space[-1])
  # Escaped quotes: those after an odd run of backslashes. Only quotes
  # right after a backslash need the walk back, which is rare.
  shifted = quotes + step.start - 1
  maybe = quotes[(shifted >= 0) & (data[np.maximum(shifted, 0)] == _BACKSLASH)]
  if maybe.size:
    escaped = [
        q
        for q in maybe.tolist()
        if _odd_backslashes(data, step.start + q, walk_left)
    ]
    if escaped:
      quotes = np.setdiff1d(quotes, np.asarray(escaped, dtype=quotes.dtype))
  toggles = np.zeros(chunk.size, np.uint8)
  toggles[quotes] = 1
  # Parity of the quotes so far (mod 256 keeps it): 1 inside a string,
  # counting the opening quote in and the closing one out.
  inside = np.cumsum(toggles, dtype=np.uint8)
  inside += np.uint8(step.in_string)
  inside &= 1
  space = _spaces(chunk)
  space &= inside == 0
  return (
      _first_of_runs(space, step.after_space),
      bool(inside[-1]),
      bool(space[-1]),
  )


def _spaces(chunk: np.ndarray) -> np.ndarray:
  if chunk.min() == chunk.max() == 0x20:
    return np.ones(chunk.size, bool)
  space = chunk == 0x20
  space |= chunk == 0x0A
  space |= chunk == 0x0D
  space |= chunk == 0x09
  return space


def _first_of_runs(space: np.ndarray, after_space: bool) -> np.ndarray:
  """Keeps every byte but whitespace that follows whitespace."""
  keep = np.empty_like(space)
  keep[0] = not (space[0] and after_space)
  np.logical_not(space[1:] & space[:-1], out=keep[1:])
  return keep


def _odd_backslashes(
    data: np.ndarray, quote: int, walk_left: list[int]
) -> bool:
  run = 0
  at = quote - 1
  while at >= 0 and data[at] == _BACKSLASH:
    run += 1
    at -= 1
  if walk_left[0] >= 0:
    walk_left[0] -= run
    if walk_left[0] < 0:
      raise _BackslashBudgetError()
  return run % 2 == 1
