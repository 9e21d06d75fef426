"""What counts as an id: users, devices, rooms, areas, nodes — one rule for every layer.

An id is 1..128 characters with no control characters (Unicode category Cc:
U+0000..U+001F and U+007F..U+009F). Spaces and any other printable character
are allowed. The gateway (AUTH rooms, JOIN, LEAVE), control (tickets) and the
push API (targets, paths) all apply :class:`IdRule`, so an id accepted in one
place is accepted everywhere: a room that can be pushed to can be joined.

A deployment may narrow the rule with ``max_id_length`` and ``id_pattern``
(settings); the narrowed rule is again one :class:`IdRule` object handed to
every layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["DEFAULT_ID_RULE", "ID_PATTERN", "MAX_ID_LENGTH", "IdRule", "id_problem"]

MAX_ID_LENGTH = 128
#: The base rule as a regular expression (also used by msgspec constraints and OpenAPI).
ID_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]*(?![\\s\\S])"  # not "$", which allows a final newline
_CONTROL = re.compile("[\\x00-\\x1f\\x7f-\\x9f]")


@dataclass(frozen=True, slots=True)
class IdRule:
    """The id rule, optionally narrowed: at most ``max_length`` characters, matching ``pattern``.

    Raises :class:`ValueError` when ``max_length`` is outside 1..128 or
    ``pattern`` is not a regular expression (the settings turn that into a
    configuration error naming the setting).
    """

    max_length: int = MAX_ID_LENGTH
    pattern: str = ""
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.max_length <= MAX_ID_LENGTH:
            # Clients carry ids in tickets and JOIN frames, limited to 128 characters.
            raise ValueError(f"max_id_length: must be between 1 and {MAX_ID_LENGTH}")
        regex = None
        if self.pattern:
            try:
                regex = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"id_pattern: not a regular expression ({exc})") from exc
        object.__setattr__(self, "_regex", regex)

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not a valid id, or None when it is."""
        if not value:
            return "must not be empty"
        if len(value) > self.max_length:
            if self.max_length == MAX_ID_LENGTH:
                return f"must be at most {MAX_ID_LENGTH} characters"
            return f"must be at most {self.max_length} characters (max_id_length)"
        if _CONTROL.search(value):
            return "must not contain control characters"
        if self._regex is not None and not self._regex.fullmatch(value):
            return f"must match {self.pattern!r} (id_pattern)"
        return None

    def valid(self, value: str) -> bool:
        """Whether ``value`` is a valid id."""
        return self.problem(value) is None


DEFAULT_ID_RULE = IdRule()


def id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid id under the default rule, or None when it is."""
    return DEFAULT_ID_RULE.problem(value)
