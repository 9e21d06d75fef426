"""What counts as an id: users, devices, rooms, areas, nodes (PROTOCOL.md §2.2).

An id is 1..128 characters with no control characters (Unicode category Cc:
U+0000..U+001F and U+007F..U+009F). The API's schemas and the ticket check
apply the same rule, so an id accepted in one place is accepted everywhere.
"""

from __future__ import annotations

import re

__all__ = ["ID_PATTERN", "MAX_ID_LENGTH", "id_problem"]

MAX_ID_LENGTH = 128
#: The rule as a regular expression (also used by msgspec constraints).
ID_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
_CONTROL = re.compile("[\\x00-\\x1f\\x7f-\\x9f]")


def id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid id, or None when it is."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None
