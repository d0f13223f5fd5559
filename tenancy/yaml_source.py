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


class Document:
    """A parsed file: its plain value and where each path's key and value stand.

    `parse` records the positions while it builds the value. `parse_fast` and `deferred` keep the text
    instead and find the positions on first use, by parsing it again: a valid tenant file never needs
    them (only a finding does), and recording ~130 per file cost a third of the parse.
    """

    __slots__ = ("_keys", "_text", "_values", "data")

    def __init__(self, data: Any = None, *, text: str | None = None) -> None:
        self.data = data
        self._text = text
        self._values: dict[Path, Position] | None = {} if text is None else None
        self._keys: dict[Path, Position] | None = {} if text is None else None

    @classmethod
    def deferred(cls, text: str) -> Document:
        """Positions only: `data` stays None; the positions come from TEXT (a file `parse` accepts)."""
        return cls(None, text=text)

    def without_data(self) -> Document:
        """This document's positions (known or still to find) without its data."""
        if self._text is not None:
            return Document.deferred(self._text)
        lean = Document()
        lean._values, lean._keys = self.values, self.keys
        return lean

    @property
    def values(self) -> dict[Path, Position]:
        """Path → position of its value (the node itself)."""
        return self._located()[0]

    @property
    def keys(self) -> dict[Path, Position]:
        """Path → position of the key naming it in its mapping."""
        return self._located()[1]

    def _located(self) -> tuple[dict[Path, Position], dict[Path, Position]]:
        if self._values is None or self._keys is None:
            try:
                full = parse(self._text or "")
                self._values, self._keys = full.values, full.keys
            except YamlError:  # not reached for a text parse_fast accepted: then nothing is known
                self._values, self._keys = {}, {}
            self._text = None
        return self._values, self._keys

    def position(self, path: Path) -> Position:
        """The closest known position for a path: its key, else its value, else its nearest parent."""
        values, keys = self._located()
        p = tuple(path)
        while p:
            if p in keys:
                return keys[p]
            if p in values:
                return values[p]
            p = p[:-1]
        return values.get((), Position(1, 1))


def _pos(node: yaml.Node) -> Position:
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    try:
        return _typed(node.tag, node.value)
    except _UnknownTag:
        raise YamlError(f"unsupported YAML tag {node.tag}", _pos(node)) from None
    except ValueError:  # Python refuses to convert an integer of more than 4,300 digits
        raise YamlError(f"a number of {len(node.value):,} digits is too long (at most 4,300)", _pos(node),
                        hint="quote it if it is text") from None


class _UnknownTag(Exception):
    pass


def _typed(tag: str, v: str) -> Any:
    """The Python value of scalar text V resolved (or tagged) as TAG; _UnknownTag for other tags."""
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
    raise _UnknownTag(tag)


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
    doc = Document()
    if root is None:
        return doc
    doc.data = _build(root, (), doc.values, doc.keys, [max_nodes])
    return doc


def parse_fast(text: str) -> Document:
    """What `parse(text)` gives for a tenant file (anchors and aliases refused), its positions found only
    when first asked for. Raises YamlError, exactly as `parse` does.

    The value is built straight from libyaml's events, without composing nodes or recording positions:
    0.25 ms against 0.45 ms of CPU for a 3 KB tenant file. Whatever the events path leaves to `parse`
    (any anchor, alias or explicit tag, a key that is not a scalar, a merge or duplicate key, another
    document, a syntax error, more than MAX_NODES values, a number Python refuses) is parsed again by
    `parse`, which raises the located error or returns its own document: the two never disagree.
    """
    try:
        data = _data_from_events(text)
    except _FullParse:
        return parse(text)
    return Document(data, text=text)


class _FullParse(Exception):
    """The events path met something only `parse` decides on (and locates)."""


# The core schema's implicit resolvers by first character, followed by the wildcard ones (none in the core
# schema), as BaseResolver.resolve tries them.
_WILDCARD: list[tuple[str, re.Pattern[str]]] = list(_CoreResolver.yaml_implicit_resolvers.get(None, []))
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    first: [*resolvers, *_WILDCARD]
    for first, resolvers in _CoreResolver.yaml_implicit_resolvers.items() if first is not None
}


def _data_from_events(text: str) -> Any:
    """TEXT's single document as plain values, built from events; raises _FullParse (see parse_fast)."""
    events = CParser(text)
    try:
        return _build_from_events(events.get_event)
    except (yaml.YAMLError, ValueError, _UnknownTag):
        raise _FullParse from None
    finally:
        events.dispose()


_Scalar, _MapStart, _SeqStart = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
_MapEnd, _SeqEnd = yaml.MappingEndEvent, yaml.SequenceEndEvent


def _build_from_events(get_event: Any) -> Any:
    if type(get_event()) is not yaml.StreamStartEvent:
        raise _FullParse
    event = get_event()
    if type(event) is yaml.StreamEndEvent:
        return None  # an empty stream: `parse` gives a document without data
    if type(event) is not yaml.DocumentStartEvent:
        raise _FullParse
    opened: list[Any] = []  # the open collections, innermost last
    keys: list[str | None] = []  # for each, the mapping key waiting for its value (None: none yet)
    root: Any = None
    budget = MAX_NODES  # values only, as _build counts them
    while True:
        event = get_event()
        kind = type(event)
        if kind is _Scalar:
            if event.anchor is not None or event.tag is not None:
                raise _FullParse  # `parse` refuses anchors and types (or refuses) tagged values
            text = event.value
            if opened and keys[-1] is None and type(opened[-1]) is dict:
                if text == "<<" or text in opened[-1]:
                    raise _FullParse  # a merge or duplicate key: `parse` refuses it where it stands
                keys[-1] = text
                continue
            value: Any = text
            if event.implicit[0]:  # plain: resolved by the core schema, as BaseResolver.resolve does
                for tag, rx in _RESOLVERS.get(text[0] if text else "", _WILDCARD):
                    if rx.match(text):
                        value = _typed(tag, text)
                        break
        elif kind is _MapEnd or kind is _SeqEnd:
            opened.pop()
            keys.pop()
            if not opened:
                break
            continue
        elif kind is _MapStart or kind is _SeqStart:
            if event.anchor is not None or event.tag is not None:
                raise _FullParse
            if opened and keys[-1] is None and type(opened[-1]) is dict:
                raise _FullParse  # a collection as a key
            value = {} if kind is _MapStart else []
        else:  # an alias
            raise _FullParse
        budget -= 1
        if budget < 0:
            raise _FullParse
        if opened:
            container = opened[-1]
            if type(container) is dict:
                container[keys[-1]] = value
                keys[-1] = None
            else:
                container.append(value)
        else:
            root = value
        if kind is not _Scalar:
            opened.append(value)
            keys.append(None)
        elif not opened:
            break  # the document is one scalar
    if type(get_event()) is not yaml.DocumentEndEvent or type(get_event()) is not yaml.StreamEndEvent:
        raise _FullParse  # another document (or a syntax error after this one)
    return root


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


def _build(node: yaml.Node, path: Path, values: dict[Path, Position], keys: dict[Path, Position],
           budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlError("the document expands to too many nodes (aliases?)", _pos(node), path,
                        "write the values out instead of repeating them through aliases")
    values[path] = _pos(node)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), values, keys, budget) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise YamlError("a mapping key must be a plain string", _pos(knode))
            key = knode.value
            if key == "<<":
                raise YamlError("merge keys (<<) are not supported in tenant files", _pos(knode))
            if key in out:
                first = keys[(*path, key)]
                raise YamlError(
                    f"duplicate key {key!r} (first defined at line {first.line})", _pos(knode), (*path, key)
                )
            keys[(*path, key)] = _pos(knode)
            out[key] = _build(vnode, (*path, key), values, keys, budget)
        return out
    raise YamlError("unsupported YAML node", _pos(node))
