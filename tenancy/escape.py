"""Make text that came from outside safe to print, log or store.

Three uses, one rule each:

- :func:`printable` before a log line or a terminal: every control character (C0 including NUL, CR and
  LF, DEL, C1, so ESC sequences and forged lines are impossible), every format character (category Cf:
  bidi marks and overrides, zero-width characters), every lone UTF-16 surrogate and every backslash
  becomes a visible escape (``\\x1b``, ``\\n``, ``\\u200e``, ``\\ud800``, ``\\\\``). Other text is unchanged.
- :func:`markup` for text shown through rich: :func:`printable`, then rich's markup brackets escaped
  (``[link=…]`` is shown, not interpreted).
- :func:`storable` before a database: only what a database cannot hold is escaped (NUL, which
  PostgreSQL refuses in text; lone surrogates, which neither UTF-8 driver can encode). Deterministic, so a
  re-delivered event maps to the same stored key.
- :func:`storable_key` for a key compared in the database (an event ID): the text as sent when a database
  holds it whole, else its digest. Unlike an escape, one-to-one: ``"a\x00"`` and the six characters
  ``a\\x00`` are different events and must never share a key (the second would be answered "duplicate").
"""

from __future__ import annotations

import hashlib
import re

# C0 controls, DEL, C1 controls, line/paragraph separators, every format character (Unicode category Cf:
# bidi marks and overrides such as U+200E/U+200F/U+061C/U+202E reorder what a terminal or page shows,
# zero-width ones hide text; the list is Unicode 15.1's, tests/test_escape.py checks it against
# unicodedata), lone surrogates, and the backslash (so an escape cannot be forged).
_FORMAT = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
           "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
           "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
_UNPRINTABLE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_FORMAT}\ud800-\udfff\\\\]")
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


def storable_key(text: str, max_length: int) -> str:
    """TEXT itself when a database can hold it whole (no NUL, no lone surrogate, at most ``max_length``
    characters), else ``sha256:<hex digest of its UTF-8>`` (71 characters; surrogates encoded as they are, so
    the digest exists for any str). One-to-one, up to a sender choosing a digest as its own ID."""
    if len(text) <= max_length and ((text.isascii() and "\x00" not in text) or not _UNSTORABLE.search(text)):
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = ["markup", "printable", "storable", "storable_key"]
