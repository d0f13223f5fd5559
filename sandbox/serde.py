"""Generic JSON (de)serialisation of the sandbox's state dataclasses.

The state is plain dataclasses of primitives, lists, dicts (str or int keys), optionals and nested
dataclasses; one generic walker keeps every provider's `to_dict`/`from_dict` from drifting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    """Dataclasses → dicts, recursively; fields whose name starts with `_` are runtime-only."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(to_plain(v) for v in value)
    return value


def from_plain(cls: type[T], data: Any) -> T:
    """Build a `cls` dataclass from `to_plain` output; unknown keys are refused, missing get defaults."""
    return typing.cast(T, _convert(cls, data))


def _convert(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], data) if len(non_none) == 1 else data
    if origin is list:
        return [_convert(args[0], v) for v in data]
    if origin is set:
        return {_convert(args[0], v) for v in data}
    if origin is dict:
        key_t, val_t = args
        return {(int(k) if key_t is int else k): _convert(val_t, v) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init and not f.name.startswith("_")}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{tp.__name__}: unknown fields {sorted(unknown)}")
        return tp(**{k: _convert(hints[k], v) for k, v in data.items()})
    if tp is Any:
        return data
    if tp is float and isinstance(data, int):
        return float(data)
    return data
