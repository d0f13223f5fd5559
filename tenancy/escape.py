"""Make text that came from outside safe to print, log or store.

Three uses, one rule each:

- :func:`printable` before a log line or a terminal: every control character (C0 including NUL, CR and
  LF, DEL, C1, so ESC sequences and forged lines are impossible), every lone UTF-16 surrogate and every
  backslash becomes a visible escape (``\\x1b``, ``\\n``, ``\\ud800``, ``\\\\``). Other text is unchanged.
- :func:`markup` for text shown through rich: :func:`printable`, then rich's markup brackets escaped
  (``[link=…]`` is shown, not interpreted).
- :func:`storable` before a database: only what a database cannot hold is escaped (NUL, which
  PostgreSQL refuses in text; lone surrogates, which neither UTF-8 driver can encode). Deterministic, so a
  re-delivered event maps to the same stored key.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, line/paragraph separators and bidi overrides (they reorder what a
# terminal shows), lone surrogates, and the backslash (so an escape cannot be forged).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\\\\]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# rich's markup tags: an opening bracket followed by a tag-like name (see rich.markup.escape).
_MARKUP_TAG = re.compile(r"(\\*)(\[[a-zA-Z#/@].*?\])")


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """TEXT with control characters, lone surrogates and backslashes as visible escapes; one line."""
    if text.isprintable() and "\\" not in text:  # the common case costs one C scan
        return text
    return _UNPRINTABLE.sub(_escape_char, text)


def markup(text: str) -> str:
    """:func:`printable`, with rich markup escaped: safe inside a rich-rendered string."""
    return _MARKUP_TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", printable(text))


def storable(text: str) -> str:
    """TEXT with NUL and lone surrogates escaped (``\\x00``, ``\\ud800``); anything else unchanged."""
    if text.isascii() and "\x00" not in text:
        return text
    return _UNSTORABLE.sub(_escape_char, text)


__all__ = ["markup", "printable", "storable"]
