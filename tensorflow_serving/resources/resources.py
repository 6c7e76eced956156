"""Resource quantities that loaders estimate and the tracker budgets.

Upstream describes resources as (device, device instance, kind) triples; every
loader we serve only estimates RAM, so a flat `kind -> quantity` mapping is
enough and keeps the admission arithmetic obvious.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

# The resource kind the TensorFlow loader estimates and the
# `total_model_memory_limit_bytes` budget limits.
RAM_BYTES = "ram_bytes"


class ResourceAllocation(Mapping[str, int]):
  """Non-negative quantity per resource kind; immutable.

  Immutable so an estimate can be stored by the tracker and shared between
  threads without copies. An explicit zero is kept: in a budget it means "none
  of this kind", which differs from an absent (unmetered) kind.
  """

  __slots__ = ("_quantities",)

  def __init__(
      self, quantities: Mapping[str, int] | None = None, /, **kinds: int
  ):
    merged = dict(quantities or {})
    merged.update(kinds)
    for kind, quantity in merged.items():
      if not isinstance(kind, str):
        raise TypeError(f"resource kind must be a str, got {kind!r}")
      if (
          isinstance(quantity, bool)
          or not isinstance(quantity, int)
          or quantity < 0
      ):
        raise ValueError(
            f"resource {kind!r} needs a non-negative int, got {quantity!r}"
        )
    self._quantities = merged

  def __getitem__(self, kind: str) -> int:
    return self._quantities[kind]

  def __iter__(self) -> Iterator[str]:
    return iter(self._quantities)

  def __len__(self) -> int:
    return len(self._quantities)

  def __hash__(self) -> int:
    return hash(frozenset(self._quantities.items()))

  def __repr__(self) -> str:
    return f"ResourceAllocation({self._quantities!r})"

  def quantity(self, kind: str) -> int:
    """The amount of `kind`, 0 when absent."""
    return self._quantities.get(kind, 0)

  @property
  def is_empty(self) -> bool:
    """True when no kind has a positive quantity."""
    return not any(self._quantities.values())

  def add(self, other: Mapping[str, int]) -> ResourceAllocation:
    """Kind-wise sum."""
    total = dict(self._quantities)
    for kind, quantity in other.items():
      total[kind] = total.get(kind, 0) + quantity
    return ResourceAllocation(total)

  def subtract(self, other: Mapping[str, int]) -> ResourceAllocation:
    """Kind-wise difference; raises ValueError rather than going negative."""
    rest = dict(self._quantities)
    for kind, quantity in other.items():
      left = rest.get(kind, 0) - quantity
      if left < 0:
        raise ValueError(
            f"cannot subtract {other!r} from {self!r}: "
            f"{kind!r} would become {left}"
        )
      rest[kind] = left
    return ResourceAllocation(rest)

  def fits_within(self, budget: Mapping[str, int]) -> bool:
    """Whether every quantity here is at most the budget's (absent = 0)."""
    return all(
        quantity <= budget.get(kind, 0)
        for kind, quantity in self._quantities.items()
    )

  __add__ = add
  __sub__ = subtract
