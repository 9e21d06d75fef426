"""MultiMap: one value costs no set; the reads behave as a collection either way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longlink.logic.multimap import MultiMap


def test_one_value_is_held_as_itself_then_a_set_then_itself_again() -> None:
    index: MultiMap[str, int] = MultiMap()
    index.add("u", 1)
    assert index.get("u") == (1,) and "u" in index and len(index) == 1
    index.add("u", 2)
    assert set(index["u"]) == {1, 2}
    index.discard("u", 1)
    assert index.get("u") == (2,)
    index.discard("u", 2)
    assert "u" not in index and index.get("u") == ()
    index.discard("u", 3)  # harmless


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abc"), st.integers(0, 4)), max_size=80))
def test_matches_a_dict_of_sets(ops: list[tuple[bool, str, int]]) -> None:
    index: MultiMap[str, int] = MultiMap()
    model: dict[str, set[int]] = {}
    for add, key, value in ops:
        if add:
            index.add(key, value)
            model.setdefault(key, set()).add(value)
        else:
            index.discard(key, value)
            model.get(key, set()).discard(value)
            if key in model and not model[key]:
                del model[key]
    assert {k: set(index.get(k)) for k in index} == model
