"""Pure helpers over the specs' JSON schemas (OpenAPI 3.1 and Swagger 2.0 alike): what an object may carry.

`undocumented(schema, instance, resolve)` lists every property of `instance` that its schema does not
define, at any depth: documented object schemas are treated as closed (as if `additionalProperties:
false`), while schemas composed with `allOf`/`anyOf`/`oneOf` are closed over the union of their members'
properties (so `allOf: [Property, {extra}]` still accepts both). An object schema with no `properties`, or
with `additionalProperties`/`patternProperties`, stays open (a free-form map).

`graph_fields("a,b{c},d.limit(5)")` → ["a", "b", "d"]: the top-level names of a Graph `fields=` list.
`object_fields(schema, resolve)`: the names a Graph `fields=` may ask for: the properties of the object
an operation returns, or of each item of its `data` list (Graph's connection shape).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

Resolve = Callable[[str], Any]


def resolver(document: dict[str, Any]) -> Resolve:
    """A `$ref` resolver for local JSON pointers (`#/components/schemas/X`, `#/definitions/X`)."""
    def resolve(ref: str) -> Any:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node
    return resolve


def members(schema: Any, resolve: Resolve) -> list[dict[str, Any]]:
    """The schema and every schema it is composed of, `$ref`s resolved (allOf, anyOf, oneOf members)."""
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        while isinstance(node, dict) and "$ref" in node:
            node = resolve(node["$ref"])
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        for key in ("allOf", "anyOf", "oneOf"):
            stack.extend(node.get(key) or [])
    return out


def property_names(schema: Any, resolve: Resolve) -> set[str] | None:
    """The property names an object of this schema may carry; None when the schema leaves it open."""
    names: set[str] = set()
    for part in members(schema, resolve):
        extra = part.get("additionalProperties")
        if (extra is not None and extra is not False) or part.get("patternProperties"):
            return None
        props = part.get("properties")
        if isinstance(props, dict):
            names.update(props)
    return names or None


def _property_schemas(schema: Any, resolve: Resolve, name: str) -> list[Any]:
    return [p["properties"][name] for p in members(schema, resolve)
            if isinstance(p.get("properties"), dict) and name in p["properties"]]


def _item_schemas(schema: Any, resolve: Resolve) -> list[Any]:
    return [p["items"] for p in members(schema, resolve) if isinstance(p.get("items"), dict)]


def undocumented(schema: Any, instance: Any, resolve: Resolve, path: str = "") -> list[str]:
    """Every `path: undocumented property 'x'` in `instance` (de-duplicated, in document order)."""
    found: dict[str, None] = {}
    for problem in _walk(schema, instance, resolve, path):
        found.setdefault(problem)
    return list(found)


def _walk(schema: Any, instance: Any, resolve: Resolve, path: str) -> Iterator[str]:
    if isinstance(instance, dict):
        names = property_names(schema, resolve)
        for key, value in instance.items():
            if names is not None and key not in names:
                yield f"{path or '<body>'}: undocumented property {key!r}"
                continue
            for sub in _property_schemas(schema, resolve, key):
                yield from _walk(sub, value, resolve, f"{path}/{key}")
    elif isinstance(instance, list):
        for sub in _item_schemas(schema, resolve):
            for i, value in enumerate(instance):
                yield from _walk(sub, value, resolve, f"{path}/{i}")


def graph_fields(raw: str) -> list[str]:
    """Top-level names of a Graph `fields` list: `a,b{c,d},e.limit(5)` → ['a', 'b', 'e']."""
    names: list[str] = []
    depth, current = 0, ""
    for ch in raw + ",":
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth -= 1
        if depth == 0 and ch == ",":
            name = re.split(r"[{.(]", current, maxsplit=1)[0].strip()
            if name:
                names.append(name)
            current = ""
        else:
            current += ch
    return names


def object_fields(schema: Any, resolve: Resolve) -> set[str]:
    """What `fields=` may name for an operation answering `schema`: its object, or its `data` items'."""
    data = _property_schemas(schema, resolve, "data")
    items = [i for d in data for i in _item_schemas(d, resolve)]
    target = items or [schema]
    names: set[str] = set()
    for t in target:
        names |= property_names(t, resolve) or set()
    return names
