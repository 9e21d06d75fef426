"""The depth check of request bodies (longlink.api.jsondepth) against the real depth."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from longlink.api.jsondepth import depth_problem

# Strings full of what could fool a scan: quotes, backslashes, brackets.
_text = st.text(alphabet='"\\[]{}ab:,/u', max_size=8)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=25,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(_json, st.integers(min_value=0, max_value=6), st.booleans())
def test_a_body_is_refused_exactly_when_it_nests_deeper_than_the_limit(
    value: Any, limit: int, ascii_only: bool
) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    problem = depth_problem(body, limit)
    assert (problem is None) == (depth(value) <= limit), (body, problem)


def test_the_path_of_the_deep_part_is_named() -> None:
    body = json.dumps({"messages": [{"data": 1}, {"data": [[[['\\"]']]]]}]}).encode()
    problem = depth_problem(body, 4)
    assert problem == "messages[1].data: nested deeper than 4 levels (json_max_depth)"
    assert depth_problem(body, 6) is not None  # 7 levels: the object, messages, ...
    assert depth_problem(body, 7) is None
