"""A REST request body as JSON: parsing, and the wording of JSON in errors.

Bodies are parsed with orjson, falling back to the stdlib `json` module only
for what orjson rejects (the `NaN`/`Infinity` tokens upstream's rapidjson
accepts, and numbers beyond 64 bits); a body that is not JSON is worded by
python-rapidjson, so the message and offset are upstream's own. Error messages quote JSON values the
way rapidjson prints them, as upstream's messages do.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping, Sequence
import json
import math
import re
from typing import Any

import numpy as np
import orjson
import rapidjson

from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor import squeeze

# Where a byte of a squeezed body is in the body received.
OffsetMap = Callable[[int], int]
B64_KEY = "b64"
BYTES_SUFFIX = "_bytes"
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


class JsonDocument(dict):
  """A parsed request body that keeps the raw bytes for one cheap question.

  numpy turns JSON bools among numbers into 0/1 silently. When a numeric
  input holds a 0 or 1, `may_contain_bools` tells from the raw body (no
  `true`/`false` token anywhere) that no bool hides there; a scan of the
  raw bytes is several times cheaper than checking element types.
  """

  __slots__ = ("_body", "_may_contain_bools")

  def __init__(
      self, doc: dict[str, Any], body: bytes | bytearray | str | None = None
  ):
    super().__init__(doc)
    self._body = body
    self._may_contain_bools: bool | None = None

  @property
  def may_contain_bools(self) -> bool:
    if self._may_contain_bools is None:
      body = self._body
      if body is None:
        self._may_contain_bools = True
      elif isinstance(body, str):
        self._may_contain_bools = "true" in body or "false" in body
      else:
        self._may_contain_bools = b"true" in body or b"false" in body
      self._body = None
    return self._may_contain_bools


def json_type(value: Any) -> str:
  """rapidjson's type names, as upstream's messages use them."""
  if value is None:
    return "Null"
  if value is True:
    return "True"
  if value is False:
    return "False"
  if isinstance(value, dict):
    return "Object"
  if isinstance(value, list):
    return "Array"
  if isinstance(value, str):
    return "String"
  return "Number"


def json_str(value: Any) -> str:
  """A JSON value for an error message, pretty-printed like rapidjson."""
  if isinstance(value, float):
    return float_str(value)
  try:
    return json.dumps(value, indent=4, ensure_ascii=False)
  except (TypeError, ValueError, RecursionError):
    return "<unprintable value>"


def float_str(value: float) -> str:
  if math.isnan(value):
    return "NaN"
  if math.isinf(value):
    return "Infinity" if value > 0 else "-Infinity"
  return repr(value)


def shape_str(shape: Sequence[int]) -> str:
  return "[" + ",".join(str(d) for d in shape) + "]"


def status_str(error: status.ServingError) -> str:
  """absl::Status::ToString(), which upstream embeds in wrapped errors."""
  return f"{error.code.name}: {error.message}"


def is_b64_object(value: Any) -> bool:
  return (
      isinstance(value, dict)
      and len(value) == 1
      and isinstance(value.get(B64_KEY), str)
  )


def b64_decode(value: dict[str, Any]) -> bytes:
  if not is_b64_object(value):
    raise status.invalid_argument(
        f"JSON Value: {json_str(value)} not formatted correctly for base64 "
        "data"
    )
  text = value[B64_KEY]
  # absl::Base64Unescape: standard alphabet, padding optional.
  if len(text) % 4:
    text += "=" * (-len(text) % 4)
  try:
    return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
  except (binascii.Error, UnicodeEncodeError, ValueError):
    raise status.invalid_argument("Unable to base64 decode") from None


_RAPIDJSON_ERROR = re.compile(r"Parse error at offset (\d+): (.*)", re.DOTALL)


def _parse_error(
    body: bytes | bytearray | str, original_offset: OffsetMap | None = None
) -> str:
  """Upstream's message for a body that is not JSON, in rapidjson's words.

  Only reached on the error path: python-rapidjson reparses the body to
  name the error and its offset exactly as upstream's rapidjson does
  (`original_offset` maps it back when the body was squeezed).
  """
  try:
    # Native numbers, as C++ rapidjson: no double holds 10**400.
    rapidjson.loads(body, number_mode=rapidjson.NM_NAN | rapidjson.NM_NATIVE)
  except rapidjson.JSONDecodeError as exc:
    match = _RAPIDJSON_ERROR.fullmatch(str(exc))
    if match:
      offset = int(match.group(1))
      if original_offset is not None:
        offset = original_offset(offset)
      return f"JSON Parse error: {match.group(2)} at offset: {offset}"
    return f"JSON Parse error: {exc}"
  except (ValueError, RecursionError) as exc:
    return f"JSON Parse error: {exc}"
  return "JSON Parse error: Invalid value."


class _NumberTooBigError(Exception):
  """A JSON number no double can hold (rapidjson's kParseErrorNumberTooBig)."""


def _json_int(text: str) -> int:
  value = int(text)
  if not INT64_MIN <= value <= UINT64_MAX:
    try:
      float(value)  # rapidjson stores it as a double, if one can hold it.
    except OverflowError:
      raise _NumberTooBigError(text) from None
  return value


def _json_float(text: str) -> float:
  value = float(text)
  if math.isinf(value):  # `Infinity` itself goes to parse_constant.
    raise _NumberTooBigError(text)
  return value


# Bodies at least this large are checked for being only whitespace before
# any parser sees them (smaller ones parse in well under a millisecond).
BLANK_CHECK_MIN_BYTES = 1 << 20
_BLANK_CHECK_STEP = 16 << 20


def check_not_blank(body: bytes | bytearray | str) -> None:
  """Refuses a large body of JSON whitespace alone, as rapidjson words it.

  Every JSON parser here walks whitespace with the GIL held, ~1 s per
  256 MiB for orjson and rapidjson each, and some copy the body first, so
  a gigabyte of spaces stalled every other request for many seconds. numpy
  scans it in steps with the GIL released (~60 ms per GiB) and stops at the
  first byte that could start a value.
  """
  if len(body) < BLANK_CHECK_MIN_BYTES or isinstance(body, str):
    return
  data = np.frombuffer(body, np.uint8)
  for start in range(0, data.size, _BLANK_CHECK_STEP):
    step = data[start : start + _BLANK_CHECK_STEP]
    if step.max() > 0x20:
      return
    if step.min() == 0x20:
      continue  # Spaces alone.
    if (
        (step != 0x20) & (step != 0x0A) & (step != 0x0D) & (step != 0x09)
    ).any():
      return  # A control character: the parsers word that error.
  raise status.invalid_argument(
      f"JSON Parse error: The document is empty. at offset: {len(body)}"
  )


def decode_json_body(
    body: bytes | bytearray | str,
    original_offset: OffsetMap | None = None,
    squeeze_first: bool = True,
) -> JsonDocument:
  """Parses a request body, which must be a JSON object.

  NaN, Infinity and -Infinity are accepted, as upstream's rapidjson parser
  (kParseNanAndInfFlag) does. A large body that is mostly whitespace is
  squeezed first (squeeze.py) unless `squeeze_first` is False (the caller
  did, and passes `original_offset`).
  """
  if not body:
    raise status.invalid_argument("JSON Parse error: The document is empty")
  check_not_blank(body)
  if squeeze_first:
    squeezed = squeeze.squeeze(body)
    if squeezed is not None:
      body, original_offset = squeezed.body, squeezed.original_offset
  try:
    doc = orjson.loads(body)
  except orjson.JSONDecodeError:
    try:
      # Knows NaN/Infinity and integers beyond 64 bits; orjson does not.
      doc = json.loads(body, parse_int=_json_int, parse_float=_json_float)
    except (_NumberTooBigError, ValueError, RecursionError):
      raise status.invalid_argument(
          _parse_error(body, original_offset)
      ) from None
  if not isinstance(doc, dict):
    raise status.invalid_argument(f"JSON Value: {json_str(doc)} Is not object")
  return JsonDocument(doc, body)


def get_signature_name(doc: Mapping[str, Any]) -> str:
  """The optional "signature_name" ("" when absent)."""
  if "signature_name" not in doc:
    return ""
  name = doc["signature_name"]
  if not isinstance(name, str):
    raise status.invalid_argument(
        f"JSON Value: {json_str(doc)} not formatted correctly. "
        "'signature_name' key must be a string value."
    )
  return name
