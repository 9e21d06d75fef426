"""An index from a key to several values that costs no set while a key has one value.

Indexes like user → connections and device → connections have, almost
always, one value per key; a ``set`` of one costs 216 bytes, ten times the
dict entry. :class:`MultiMap` stores a lone value as itself and turns it into
a set only when a second one comes (and back when it goes). At 19,000
connections that is about 0.8 KiB per connection saved across the gateway's
and the embedded registry's user and device indexes (docs/benchmarks.md).

Values must be hashable and must not be sets themselves.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Generic, TypeVar

__all__ = ["MultiMap"]

K = TypeVar("K")
V = TypeVar("V")


class MultiMap(Generic[K, V]):
    """``key -> values`` (see the module docstring); reads return a collection."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[K, V | set[V]] = {}

    def add(self, key: K, value: V) -> None:
        """Add ``value`` under ``key`` (idempotent)."""
        items = self._items
        held = items.get(key)
        if held is None:
            items[key] = value
        elif isinstance(held, set):
            held.add(value)
        elif held is not value and held != value:
            items[key] = {held, value}

    def discard(self, key: K, value: V) -> None:
        """Take ``value`` from under ``key`` (harmless when it is not there)."""
        items = self._items
        held = items.get(key)
        if held is None:
            return
        if isinstance(held, set):
            held.discard(value)
            if len(held) == 1:
                items[key] = next(iter(held))
            elif not held:
                del items[key]
        elif held is value or held == value:
            del items[key]

    def get(self, key: K, default: Collection[V] = ()) -> Collection[V]:
        """The values under ``key`` (``default`` when none); do not change what is returned."""
        held = self._items.get(key)
        if held is None:
            return default
        return held if isinstance(held, set) else (held,)

    def __getitem__(self, key: K) -> Collection[V]:
        held = self._items[key]
        return held if isinstance(held, set) else (held,)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
