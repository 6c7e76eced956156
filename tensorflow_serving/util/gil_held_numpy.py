"""numpy casts and range checks that keep the GIL, for the event loop.

numpy lets go of the GIL for any loop over more than 500 elements (a cast,
a copy, a ufunc, a reduction). On the thread running the event loop that
is a cost, not a gain: a batch thread waiting for the GIL takes it, and the
loop then waits to get it back until that thread blocks or its switch
interval (5 ms) ends, while every connection waits with it. Under batched
REST load an MNIST image's decode let go of the GIL three times (|x|, max,
cast to float32), and the loop spent more time waiting there than parsing
the JSON. Done in pieces of at most 500 elements the same work keeps the
GIL, for a few more calls.

For the tensors decoded on the loop (request bodies up to the inline limit
of the REST handler); above `MAX_PIECED` elements the work is done in one
numpy call as before, since a body that large should be decoded where
letting go of the GIL helps.
"""

from __future__ import annotations

import numpy as np

# numpy's threshold (NPY_BEGIN_THREADS_THRESHOLDED): loops over more
# elements than this run with the GIL released.
PIECE = 500
# Past this many elements, one numpy call (with the GIL released).
MAX_PIECED = 1 << 16


def astype(values: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
  """`values.astype(dtype)` (a new C-ordered array), keeping the GIL.

  Element by element the same conversion as astype's (unsafe casting).
  """
  dtype = np.dtype(dtype)
  if values.size <= PIECE or values.size > MAX_PIECED:
    return values.astype(dtype)
  flat = values.reshape(-1) if values.flags.c_contiguous else None
  if flat is None:
    return values.astype(dtype)
  out = np.empty(flat.shape, dtype)
  for start in range(0, flat.size, PIECE):
    out[start : start + PIECE] = flat[start : start + PIECE]
  return out.reshape(values.shape)


def abs_all_at_most(values: np.ndarray, bound: float) -> bool:
  """Whether every |value| <= bound (False where any is NaN), keeping the GIL."""
  if values.size <= PIECE or values.size > MAX_PIECED:
    return bool(np.abs(values).max(initial=0) <= bound)
  flat = values.reshape(-1) if values.flags.c_contiguous else None
  if flat is None:
    return bool(np.abs(values).max() <= bound)
  for start in range(0, flat.size, PIECE):
    if not np.abs(flat[start : start + PIECE]).max() <= bound:
      return False
  return True
