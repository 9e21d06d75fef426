"""How deep a JSON document nests, checked before it is decoded (docs/security.md).

msgspec decodes recursively: a body nested about a thousand levels deep
raises RecursionError (failure 6 of issue 14), and a few hundred levels are
already far from any real message. :func:`depth_problem` refuses a body
nested deeper than a limit and names where (``messages[3].data``), cheaply
for ordinary bodies:

1. a body with at most ``limit`` opening brackets cannot be too deep;
2. otherwise strings are cut out and what remains reduced to its brackets,
   all of one kind, and innermost pairs are removed ``limit`` times (each
   pass is a C-speed ``bytes.replace`` and takes one level): a body that
   empties is within the limit. Strings are cut without a regular
   expression: escaped backslashes, then escaped quotes, are removed (left
   to right, as JSON reads them), so every quote left opens or closes a
   string and a split on quotes keeps what is outside at even places (a
   200-message push batch: ~0.2 ms, was ~1.3 ms);
3. only a body that does not (too deep, or not JSON at all) is walked token
   by token to find the path; the walk stops at the first level too deep.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_MAX_DEPTH", "depth_problem"]

DEFAULT_MAX_DEPTH = 64

_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:,]', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


def depth_problem(body: bytes, limit: int = DEFAULT_MAX_DEPTH) -> str | None:
    """``"<path>: nested deeper than <limit> levels"`` or None when ``body`` is within it."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return None
    # One kind of bracket: a pass then removes exactly one level (with two kinds,
    # removing "{}" after "[]" in one pass also took the pairs the first one made).
    brackets = _outside_strings(body).translate(_ONE_KIND, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return None
        brackets = brackets.replace(b"[]", b"")
    if not brackets:
        return None
    path = _deep_path(body, limit)
    if path is None:
        return None  # unbalanced, not too deep: the decoder says what is wrong
    return f"{path or 'body'}: nested deeper than {limit} levels (json_max_depth)"


def _outside_strings(body: bytes) -> bytes:
    """``body`` without its JSON strings (what a valid document has outside them)."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(body.split(b'"')[0::2])


def _deep_path(body: bytes, limit: int) -> str | None:
    """The path of the first value nested deeper than ``limit``, or None."""
    # Each level: [is_object, key or index]; the key is the last string before ':'.
    stack: list[list[object]] = []
    last_string: bytes | None = None
    for match in _TOKEN.finditer(body):
        token = match.group()
        first = token[:1]
        if first == b'"':
            last_string = token
        elif first in b"[{":
            if len(stack) >= limit:
                return _render(stack)
            stack.append([first == b"{", None if first == b"{" else 0])
        elif first in b"]}":
            if not stack:
                return None
            stack.pop()
        elif first == b":":
            if stack and stack[-1][0] and last_string is not None:
                stack[-1][1] = last_string[1:-1].decode("utf-8", "replace")
        elif first == b"," and stack and not stack[-1][0]:
            index = stack[-1][1]
            stack[-1][1] = (index if isinstance(index, int) else 0) + 1
    return None


def _render(stack: list[list[object]]) -> str:
    """The path down to the deepest object key (``messages[3].data``), "" for none."""
    keyed = [i for i, (is_object, where) in enumerate(stack) if is_object and where is not None]
    if not keyed:
        return ""
    parts: list[str] = []
    for is_object, where in stack[: keyed[-1] + 1]:
        if is_object:
            if where is not None:
                parts.append(f".{where}" if parts else str(where))
        else:
            parts.append(f"[{where}]")
    return "".join(parts)
