"""Read YAML fast, with the line and column of every node, rejecting duplicate keys.

Tenant files are read on the webhook server's start-up path and in CI, so reading must be cheap:
ruamel.yaml's round-trip loader measured ~6 ms per tenant file, libyaml's composer ~0.15 ms. We compose
with libyaml and build plain Python values ourselves, recording positions on the way. Scalars resolve by
the YAML 1.2 core schema, as SOPS (go-yaml v3) reads them: `yes`/`on` stay strings, dates stay strings.
ruamel.yaml remains the writer, where comments must survive (`tenantctl new`, write-backs).

Aliases are where YAML gets expensive: libyaml's composer shares one node per anchor, and building plain
values copies it at every alias, so ten lines of nested aliases expand to billions of nodes (a 337-byte
file took 21 s and 578 MB). Tenant files refuse anchors and aliases outright, located at the first one,
before anything is built; other files (`.sops.yaml`, where anchored recipients are common) may use
them, within a budget of built nodes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml
from yaml.cyaml import CParser  # type: ignore[attr-defined]

Path = tuple[str | int, ...]

_CORE_RESOLVERS: list[tuple[str, re.Pattern[str], str | list[str]]] = [
    # "" too: an empty plain scalar (`key:`) is null, as in every YAML 1.2 reader
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        "-+.0123456789",
    ),
]


class _CoreResolver(yaml.resolver.BaseResolver):
    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}


for _tag, _rx, _first in _CORE_RESOLVERS:
    _CoreResolver.add_implicit_resolver(_tag, _rx, list(_first))

class _Composer(CParser, _CoreResolver):
    """libyaml's parser and composer with our resolver (PyYAML wheels always ship libyaml)."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        _CoreResolver.__init__(self)


class Position(NamedTuple):
    """1-based, as editors show it. A tuple: ~128 are made per tenant file on the start-up path."""

    line: int
    column: int


class YamlError(Exception):
    """The file is not YAML we accept (syntax, duplicate key, non-string key, several documents, an anchor
    or alias where they are refused, more nodes than the budget)."""

    def __init__(self, message: str, position: Position | None, path: Path = (), hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.path = path
        self.hint = hint


ANCHOR_MESSAGE = "anchors and aliases are not allowed in tenant files"
# Far above any real document (a tenant with 200 properties builds ~4,000 nodes), far below harm.
MAX_NODES = 100_000


@dataclass
class Document:
    """A parsed file: its plain value and where each path's key and value stand."""

    data: Any
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)

    def position(self, path: Path) -> Position:
        """The closest known position for a path: its key, else its value, else its nearest parent."""
        p = tuple(path)
        while p:
            if p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Position(1, 1))


def _pos(node: yaml.Node) -> Position:
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    tag, v = node.tag, node.value
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return v.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        if v.startswith("0o"):
            return int(v[2:], 8)
        if v.startswith("0x"):
            return int(v[2:], 16)
        return int(v)
    if tag == "tag:yaml.org,2002:float":
        low = v.lower()
        if low.endswith(".inf"):
            return -math.inf if low.startswith("-") else math.inf
        if low == ".nan":
            return math.nan
        return float(v)
    if tag in ("tag:yaml.org,2002:str", "!"):
        return v
    raise YamlError(f"unsupported YAML tag {tag}", _pos(node))


def parse(text: str, *, aliases: bool = False, max_nodes: int = MAX_NODES) -> Document:
    """Parse one YAML document into plain values with positions. Raises YamlError.

    With `aliases=False` (tenant files) the first anchor or alias is an error at its position; with
    `aliases=True` they are expanded, and building more than `max_nodes` nodes is an error.
    """
    if not aliases and "&" in text:  # an alias needs an anchor, and an anchor needs a `&`
        _refuse_anchors(text)
    try:
        loader = _Composer(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else None
        raise YamlError(f"YAML syntax: {e.problem or e.context}", pos) from None
    except yaml.YAMLError as e:
        raise YamlError(f"YAML syntax: {e}", None) from None
    doc = Document(data=None)
    if root is None:
        return doc
    doc.data = _build(root, (), doc, [max_nodes])
    return doc


def _refuse_anchors(text: str) -> None:
    """Raise at the first anchor or alias; reads events only, so nothing is composed or expanded."""
    events = CParser(text)
    try:
        while events.check_event():
            event: Any = events.get_event()
            if getattr(event, "anchor", None) is not None:
                mark = event.start_mark
                raise YamlError(ANCHOR_MESSAGE, Position(mark.line + 1, mark.column + 1) if mark else None,
                                hint="write each value out in full (remove the `&name` and `*name`)")
    except yaml.YAMLError:
        pass  # a syntax error: the composer reports it with its position
    finally:
        events.dispose()


def _build(node: yaml.Node, path: Path, doc: Document, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlError("the document expands to too many nodes (aliases?)", _pos(node), path,
                        "write the values out instead of repeating them through aliases")
    doc.values[path] = _pos(node)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, budget) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise YamlError("a mapping key must be a plain string", _pos(knode))
            key = knode.value
            if key == "<<":
                raise YamlError("merge keys (<<) are not supported in tenant files", _pos(knode))
            if key in out:
                first = doc.keys[(*path, key)]
                raise YamlError(
                    f"duplicate key {key!r} (first defined at line {first.line})", _pos(knode), (*path, key)
                )
            doc.keys[(*path, key)] = _pos(knode)
            out[key] = _build(vnode, (*path, key), doc, budget)
        return out
    raise YamlError("unsupported YAML node", _pos(node))
