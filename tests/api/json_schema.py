"""The subset of JSON Schema 2020-12 the OpenAPI document uses: a validator and generators.

:class:`SchemaSet` holds the document's components. :meth:`SchemaSet.problem`
validates an instance (a keyword outside the subset is an error, so the
document cannot quietly use one these tests do not understand);
:meth:`SchemaSet.valid` draws instances valid by a schema (hypothesis);
:meth:`SchemaSet.spots` lists where an instance can be made invalid, each with
the schema the value there must keep to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

__all__ = ["ANNOTATIONS", "KEYWORDS", "SchemaSet", "field_name"]

#: Keywords that constrain instances (and that :meth:`SchemaSet.problem` checks).
KEYWORDS = frozenset(
    {
        "$ref",
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
    }
)
#: Keywords that only describe.
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "contentEncoding", "format"}
)

_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}

#: Values tried in place of a valid one; those the spot's schema refuses make it invalid.
REPLACEMENTS: list[Any] = [12345, 0, -1, 10**12, "x", "", "a\x01b", [], {}, True, False]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def field_name(path: tuple[str | int, ...]) -> str:
    """``messages[2].to.users[0]`` from ``("messages", 2, "to", "users", 0)``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class SchemaSet:
    """The schemas of one OpenAPI document (``components.schemas``, referenced by ``$ref``)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema a ``$ref`` points at (its siblings are checked where it is used)."""
        target: Any = self.document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict)
        return target

    # ------------------------------------------------------------------ validation

    def problem(self, value: Any, schema: dict[str, Any], path: str = "$") -> str | None:
        """Why ``value`` is not valid by ``schema``, or None when it is."""
        unknown = set(schema) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise AssertionError(f"{path}: keywords outside the tested subset: {sorted(unknown)}")
        if "$ref" in schema and (found := self.problem(value, self.resolve(schema), path)):
            return found
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_TYPES[t](value) for t in types):
                return f"{path}: not of type {types}"
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            return f"{path}: not one of {schema['enum']}"
        if "const" in schema and not _same(value, schema["const"]):
            return f"{path}: not {schema['const']!r}"
        for check in (self._string, self._number, self._array, self._object, self._combined):
            found = check(value, schema, path)
            if found:
                return found
        return None

    def is_valid(self, value: Any, schema: dict[str, Any]) -> bool:
        return self.problem(value, schema) is None

    def _string(self, value: Any, schema: dict[str, Any], path: str) -> str | None:
        if not isinstance(value, str):
            return None
        if len(value) < schema.get("minLength", 0):
            return f"{path}: too short"
        if len(value) > schema.get("maxLength", len(value)):
            return f"{path}: too long"
        if "pattern" in schema and not re.search(_ecma(schema["pattern"]), value):
            return f"{path}: does not match {schema['pattern']}"
        return None

    def _number(self, value: Any, schema: dict[str, Any], path: str) -> str | None:
        if not _TYPES["number"](value):
            return None
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path}: below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path}: above {schema['maximum']}"
        return None

    def _array(self, value: Any, schema: dict[str, Any], path: str) -> str | None:
        if not isinstance(value, list):
            return None
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return f"{path}: {len(value)} items"
        for index, item in enumerate(value):
            if "items" in schema and (
                found := self.problem(item, schema["items"], f"{path}[{index}]")
            ):
                return found
        return None

    def _object(self, value: Any, schema: dict[str, Any], path: str) -> str | None:
        if not isinstance(value, dict):
            return None
        if len(value) < schema.get("minProperties", 0):
            return f"{path}: too few properties"
        missing = set(schema.get("required", ())) - set(value)
        if missing:
            return f"{path}: missing {sorted(missing)}"
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                found = self.problem(item, properties[name], f"{path}.{name}")
                if found:
                    return found
            elif schema.get("additionalProperties") is False:
                return f"{path}: unknown property {name!r}"
        return None

    def _combined(self, value: Any, schema: dict[str, Any], path: str) -> str | None:
        if "anyOf" in schema and not any(self.is_valid(value, s) for s in schema["anyOf"]):
            return f"{path}: matches no anyOf branch"
        if "oneOf" in schema and sum(self.is_valid(value, s) for s in schema["oneOf"]) != 1:
            return f"{path}: does not match exactly one oneOf branch"
        for branch in schema.get("allOf", ()):
            if found := self.problem(value, branch, path):
                return found
        if "not" in schema and self.is_valid(value, schema["not"]):
            return f"{path}: matches its 'not'"
        if "if" in schema:
            then = schema.get("then" if self.is_valid(value, schema["if"]) else "else")
            if then is not None and (found := self.problem(value, then, path)):
                return found
        return None

    # ------------------------------------------------------------------ generation

    def valid(self, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        """Instances valid by ``schema``."""
        return self._draft(schema).filter(lambda value: self.is_valid(value, schema))

    def _draft(self, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        """Instances that follow ``schema``'s shape (the caller filters by the whole of it)."""
        if "$ref" in schema:
            return self.valid(self.resolve(schema))
        if "allOf" in schema:  # drawn by the first, filtered by all
            return self._draft(schema["allOf"][0])
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "anyOf" in schema and "type" not in schema and "properties" not in schema:
            return st.one_of([self.valid(branch) for branch in schema["anyOf"]])
        kind = schema.get("type")
        if kind is None:
            return JSON
        if isinstance(kind, list):
            return st.one_of([self._draft({**schema, "type": k}) for k in kind])
        if kind == "string":
            low, high = schema.get("minLength", 0), schema.get("maxLength", 24)
            if "pattern" in schema:
                pattern = schema["pattern"]
                if pattern.endswith("]*$"):  # a character class: draw the length in the regex
                    pattern = f"{pattern[:-2]}{{{low},{min(high, low + 24)}}}$"
                text = st.from_regex(pattern, fullmatch=True)
                return text.filter(lambda s: low <= len(s) <= high)
            return st.text(min_size=low, max_size=min(high, low + 24))
        if kind == "integer":
            low = schema.get("minimum", -(10**6))
            return st.integers(low, schema.get("maximum", low + 10**6))
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "array":
            low = schema.get("minItems", 0)
            high = min(schema.get("maxItems", low + 3), low + 3)
            return st.lists(self.valid(schema.get("items", {})), min_size=low, max_size=high)
        if kind == "object":
            return self._objects(schema)
        raise AssertionError(f"no generator for {schema}")

    def _objects(self, schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        """Objects of ``schema``: with ``oneOf``/``anyOf`` branches, one branch is chosen
        and (for ``oneOf``) the names the other branches require are left out."""
        properties: dict[str, Any] = schema.get("properties", {})
        branches: list[dict[str, Any]] = schema.get("oneOf") or schema.get("anyOf") or [{}]
        exclusive = "oneOf" in schema

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            branch = draw(st.sampled_from(branches))
            required = set(schema.get("required", ())) | set(branch.get("required", ()))
            left_out: set[str] = set()
            if exclusive:
                for other in branches:
                    left_out |= set(other.get("required", ()))
                left_out -= required
            narrowed = branch.get("properties", {})
            value: dict[str, Any] = {}
            for name, item in properties.items():
                if name in left_out or (name not in required and not draw(st.booleans())):
                    continue
                extra: dict[str, Any] = narrowed.get(name, {})
                if extra == NOT_NULL:
                    item = _without_null(item)
                value[name] = draw(self.valid({"allOf": [item, extra]}))
            return value

        return build()

    # ------------------------------------------------------------------ invalid spots

    def spots(
        self, value: Any, schema: dict[str, Any], path: tuple[str | int, ...] = ()
    ) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
        """Every place in ``value`` with the schema its value must keep to.

        A place that holds an object closed to unknown properties is given as
        ``path + ("bogus_field",)`` with the schema ``False``-like ``{"not": {}}``.
        """
        if "$ref" in schema:
            yield from self.spots(value, self.resolve(schema), path)
            return
        for branch in schema.get("anyOf", ()) if "properties" not in schema else ():
            if self.is_valid(value, branch):  # a union of types: the branch the value takes
                yield from self.spots(value, branch, path)
                return
        if isinstance(value, dict):
            properties = schema.get("properties", {})
            if schema.get("additionalProperties") is False:
                yield (*path, "bogus_field"), {"not": {}}
            for name, item in value.items():
                if name in properties:
                    yield (*path, name), properties[name]
                    yield from self.spots(item, properties[name], (*path, name))
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                yield (*path, index), schema["items"]
                yield from self.spots(item, schema["items"], (*path, index))


NOT_NULL = {"not": {"type": "null"}}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` less its null branch (what a ``not null`` narrowing leaves to draw from)."""
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**rest, **branches[0]}
    return schema


def _ecma(pattern: str) -> str:
    """``pattern`` for Python's ``re`` as ECMA-262 reads it: a final ``$`` ends the text
    (Python's ``$`` also matches before a final newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\Z"
    return pattern


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
