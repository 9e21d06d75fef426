"""State tables written as their docstrings draw them: a row per state, a column per input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

__all__ = ["grid"]

State = TypeVar("State")
Input = TypeVar("Input")
Cell = TypeVar("Cell")


def grid(
    inputs: Iterable[Input], rows: Mapping[State, Sequence[Cell]]
) -> dict[tuple[State, Input], Cell]:
    """A transition table keyed ``(state, input)``.

    ``inputs`` are the columns (an enum: its members in order); every row has one cell each.
    """
    return {
        (state, column): cell
        for state, row in rows.items()
        for column, cell in zip(inputs, row, strict=True)
    }
