"""Reads SOPS-encrypted YAML documents opened by age keys, in process: a fast path for the sops binary.

The binary stays the reference and the only writer. This reader implements exactly what sops 3.x does
when it decrypts a YAML tree (`sops.go`: Tree.Decrypt, walk, ToBytes; `aes/cipher.go`; the YAML store;
`stores.Metadata.ToInternal`) and refuses, with SopsUnsupported, everything it does not fully implement,
so the caller can fall back to the binary. It never refuses by guessing: an integrity failure is
reported as such and must not be retried with the binary as if nothing happened.

Errors (no message ever holds a plaintext value, the data key or an identity):
    SopsError
    ├── SopsUnsupported       the file uses a feature this reader does not implement: use the binary
    ├── SopsMacMismatch       the file was changed outside sops (MAC or a value's tag fails): never
    │                         fall back silently
    ├── SopsNoMatchingKey     no given identity opens any age stanza of the file
    └── SopsInvalidIdentity   the identity text (SOPS_AGE_KEY / key file) has a malformed line

What sops does, and this module mirrors:
- each value is `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<str|int|float|bool|...>]`,
  AES-256-GCM with the 32-byte data key, a 32-byte IV, and as additional data the mapping keys of the
  value's path joined by ":" plus a trailing ":" (list indices are not part of the path);
- which values are encrypted follows the file's one rule (`encrypted_regex`, `unencrypted_regex`,
  `encrypted_suffix` or `unencrypted_suffix`, by default `unencrypted_suffix: _unencrypted`), tested
  on every key of the path;
- the MAC is SHA-512 over every non-null leaf in document order (only the encrypted ones after a fixed
  prefix when `mac_only_encrypted`), each leaf as ToBytes gives it: strings as UTF-8, ints in decimal,
  floats as Go's `FormatFloat(f, 'f', -1, 64)`, booleans as `True`/`False`; comments are not hashed.
  The stored MAC is the upper-case hex digest, encrypted with the data key and `lastmodified`
  (RFC 3339, as Go re-formats it) as additional data;
- the data key is the plaintext of an armored age file in `sops.age[].enc`; with one key group every
  master key holds the whole key, with several the key is split by Shamir (refused here).

Refused (SopsUnsupported): Shamir key groups, files no age stanza can open but other master keys might,
comment-based rules (`*_comment_regex`), unknown metadata fields, YAML timestamps (sops 3.11 keeps them
as times, `type:time` when encrypted), binary/tagged scalars, merge keys, non-finite floats, integers
beyond 64 bits, regex rules applied to non-ASCII keys.

Known limits of the whole pipeline, not of this module (found while testing against sops 3.11):
- go-yaml writes a multi-line plaintext string that starts with whitespace inside a list as `- |4`,
  which ruamel (and PyYAML) read with different indentation or reject: the MAC then fails here while
  the binary opens the file. A caller that sees SopsMacMismatch may confirm with the binary before
  calling the file tampered.
- sops itself writes a plaintext string that starts with a tab and spans lines as `null`, and a
  plaintext -0.0 as `-0`: it cannot decrypt such files afterwards (MAC mismatch), nor can this reader.
- The MAC hashes values, not types: `port: 587` and `port: "587"` have the same MAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "SopsError",
    "SopsInvalidIdentity",
    "SopsMacMismatch",
    "SopsNoMatchingKey",
    "SopsUnsupported",
    "decrypt_document",
    "parse_identities",
]


class SopsError(Exception):
    """Root of the SOPS errors; messages never contain plaintext."""


class SopsUnsupported(SopsError):
    """The document uses something this reader does not implement; the binary may still read it."""


class SopsMacMismatch(SopsError):
    """The document fails its integrity checks: it was modified without sops, or is corrupt.

    `location` is the failing value's path in the document (keys and list indices) when one value fails
    its own check (its GCM tag, with its key path as additional data: a swapped or edited ciphertext),
    else None (the MAC over the whole document)."""

    def __init__(self, message: str, location: tuple[str | int, ...] | None = None) -> None:
        super().__init__(message)
        self.location = location


class SopsNoMatchingKey(SopsError):
    """None of the identities opens any age stanza of the document."""


class SopsInvalidIdentity(SopsError):
    """The identity text has a line that is neither a comment nor an age X25519 identity."""


_ENC_RE = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
_GO_INT_RE = re.compile(r"[+-]?[0-9]+")
_GO_DECIMAL_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_RFC3339_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})")
# Constructs Python's `re` accepts but Go's RE2 rejects (sops would then never match): refuse them.
_NOT_RE2_RE = re.compile(r"\(\?[=!<]|\(\?P=|\\[1-9]")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DATA_KEY_SIZE = 32
# sha256(b"sops"): sops seeds the MAC with it when mac_only_encrypted is set.
_MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69")

_KEY_TYPES = ("age", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms", "pgp")
_RULES = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex")
_METADATA_KEYS = frozenset(
    {
        *_KEY_TYPES,
        *_RULES,
        "key_groups",
        "shamir_threshold",
        "lastmodified",
        "mac",
        "version",
        "mac_only_encrypted",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    }
)
_DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
# Whether a key path is encrypted, by (rule, rule value): the same for every file under one rule, so
# remembered across files (10,000 tenant files share a few dozen paths). Bounded per rule.
_DECISIONS: dict[tuple[str, str], dict[tuple[str, ...], bool]] = {}
_MAX_DECISIONS = 4096
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


def parse_identities(text: str) -> list[pyrage.x25519.Identity]:
    """The age X25519 identities in `text` (SOPS_AGE_KEY or a key file's content).

    Blank lines and `#` comments are skipped, and so are plugin identities (`AGE-PLUGIN-...`): only
    the binary can use them, and it still gets its turn when no identity here opens a file.
    """
    identities = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("AGE-PLUGIN-"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            # pyrage's message may quote the line, which is a secret key: keep only its number.
            raise SopsInvalidIdentity(
                f"line {number} of the age identities is not an age secret key"
            ) from None
    return identities


def decrypt_document(doc: Mapping[str, Any], identities: Sequence[pyrage.x25519.Identity]) -> dict[str, Any]:
    """The plaintext of an encrypted YAML document, without its `sops` metadata, after checking its MAC.

    `doc` is the document as a YAML 1.2 loader gives it (ruamel's round-trip CommentedMap/CommentedSeq
    included). Values come back as plain str/int/float/bool/None in dicts and lists, in document order.
    """
    if not isinstance(doc, Mapping):
        raise SopsUnsupported("the document is not a mapping")
    if getattr(doc, "merge", None):
        raise SopsUnsupported("YAML merge keys (<<) are not supported")
    meta = _read_metadata(doc.get("sops"))
    data_key = _data_key(meta, identities)
    walker = _Walker(AESGCM(data_key), meta)
    plaintext = {}
    for key, value in doc.items():
        if key == "sops":
            continue
        if not isinstance(key, str):
            raise SopsUnsupported("the document has a key that is not a string")
        plaintext[str(key)] = walker.walk(value, (str(key),), (str(key),))
    stored_mac = walker.decrypt_mac(meta.mac, meta.mac_additional_data)
    if not hmac.compare_digest(stored_mac.encode(), walker.mac().encode()):
        raise SopsMacMismatch("MAC mismatch: the file was modified without sops")
    return plaintext


@dataclass(frozen=True)
class _Metadata:
    age_stanzas: tuple[str, ...]
    other_key_types: bool
    mac: str
    mac_additional_data: str
    rule: str
    rule_value: str
    mac_only_encrypted: bool


def _read_metadata(node: object) -> _Metadata:
    if not isinstance(node, Mapping):
        raise SopsUnsupported("no `sops` metadata mapping in the document")
    unknown = [k for k in node if k not in _METADATA_KEYS]
    if unknown:
        # sops ignores unknown fields, but one may announce a feature that changes decryption.
        raise SopsUnsupported(f"unknown `sops` metadata field {str(unknown[0])[:40]!r}")
    for field in ("unencrypted_comment_regex", "encrypted_comment_regex"):
        if node.get(field):
            raise SopsUnsupported(f"`sops.{field}` is not supported in process")
    version = node.get("version")
    if not isinstance(version, str) or not version.startswith("3."):
        raise SopsUnsupported("the file was not written by sops 3")

    # ToInternal: top-level master keys form the single key group and key_groups is then ignored.
    group: Mapping[str, Any]
    if any(_entries(node, key_type) for key_type in _KEY_TYPES):
        group = node
    else:
        groups = node.get("key_groups")
        if not isinstance(groups, list) or not groups:
            raise SopsUnsupported("the file lists no master keys")
        if len(groups) != 1:
            raise SopsUnsupported("the data key is split between key groups (Shamir)")
        if not isinstance(groups[0], Mapping):
            raise SopsUnsupported("malformed key group")
        group = groups[0]
    stanzas = []
    for entry in _entries(group, "age"):
        enc = entry.get("enc") if isinstance(entry, Mapping) else None
        if not isinstance(enc, str):
            raise SopsUnsupported("an age entry has no `enc` text")
        stanzas.append(str(enc))
    if not stanzas:
        raise SopsUnsupported("no age recipient holds the data key")
    other = any(_entries(group, key_type) for key_type in _KEY_TYPES if key_type != "age")

    rules = [(name, node.get(name)) for name in _RULES if node.get(name)]
    if len(rules) > 1:
        raise SopsUnsupported("more than one encryption rule (sops refuses such a file too)")
    rule, rule_value = rules[0] if rules else ("unencrypted_suffix", _DEFAULT_UNENCRYPTED_SUFFIX)
    if not isinstance(rule_value, str):
        raise SopsUnsupported(f"`sops.{rule}` is not a string")

    mac = node.get("mac")
    if not isinstance(mac, str):
        raise SopsMacMismatch("the file has no MAC")
    mac_only = node.get("mac_only_encrypted", False)
    if not isinstance(mac_only, bool):
        raise SopsUnsupported("`sops.mac_only_encrypted` is not a boolean")
    return _Metadata(
        age_stanzas=tuple(stanzas),
        other_key_types=other,
        mac=str(mac),
        mac_additional_data=_go_rfc3339(node.get("lastmodified")),
        rule=rule,
        rule_value=str(rule_value),
        mac_only_encrypted=mac_only,
    )


def _entries(group: Mapping[str, Any], key_type: str) -> list[Any]:
    entries = group.get(key_type)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise SopsUnsupported(f"`{key_type}` master keys are not a list")
    return entries


def _go_rfc3339(value: object) -> str:
    """`lastmodified` as Go's time.Parse(RFC3339) then Format(RFC3339) gives it: the MAC's additional data."""
    if not isinstance(value, str):
        raise SopsUnsupported("`sops.lastmodified` is not an RFC 3339 string")
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        raise SopsUnsupported("`sops.lastmodified` is not an RFC 3339 time this reader can normalise")
    seconds, offset = match.groups()
    try:
        datetime.fromisoformat(seconds)
    except ValueError:
        raise SopsUnsupported("`sops.lastmodified` is not a valid time") from None
    if offset == "+00:00":
        offset = "Z"  # Go writes a zero offset as Z
    elif offset == "-00:00":
        raise SopsUnsupported("`sops.lastmodified` has the offset -00:00")
    return seconds + offset


def _data_key(meta: _Metadata, identities: Sequence[pyrage.x25519.Identity]) -> bytes:
    if identities:
        for stanza in meta.age_stanzas:
            key = _open_age(stanza, identities)
            if key is None:
                continue
            if len(key) != _DATA_KEY_SIZE:
                raise SopsUnsupported("the age stanza does not hold a 32-byte data key")
            return key
    if meta.other_key_types:
        raise SopsUnsupported("no age identity opens the file; its other master keys need the binary")
    raise SopsNoMatchingKey("none of the age identities opens the file")


def _open_age(stanza: str, identities: Sequence[pyrage.x25519.Identity]) -> bytes | None:
    try:
        return bytes(pyrage.decrypt(stanza.encode(), list(identities)))
    except Exception:  # pyrage.DecryptError, or a stanza that is not an age file at all
        return None


class _Walker:
    """Decrypts the leaves in document order while feeding the MAC, as sops' Tree.Decrypt does."""

    def __init__(self, aead: AESGCM, meta: _Metadata) -> None:
        self._aead = aead
        self._meta = meta
        self._hash = hashlib.sha512()
        if meta.mac_only_encrypted:
            self._hash.update(_MAC_ONLY_ENCRYPTED_INIT)
        self._regex: re.Pattern[str] | None = None
        if meta.rule.endswith("_regex"):
            if _NOT_RE2_RE.search(meta.rule_value):
                raise SopsUnsupported(f"`sops.{meta.rule}` uses syntax Go's regexp lacks")
            try:
                # ASCII: Go's \w, \d, \s and \b are ASCII-only.
                self._regex = re.compile(meta.rule_value, re.ASCII)
            except re.error:
                raise SopsUnsupported(
                    f"`sops.{meta.rule}` is not a regular expression Python reads"
                ) from None
        self._decisions = _DECISIONS.setdefault((meta.rule, meta.rule_value), {})
        if len(self._decisions) > _MAX_DECISIONS:  # a bound for a long-lived process reading odd files
            self._decisions.clear()

    def walk(self, node: object, path: tuple[str, ...], loc: tuple[str | int, ...]) -> Any:
        """NODE decrypted; PATH is sops' key path (no list indices), LOC the node's place in the document."""
        # Scalars by exact type first: an ABC check on every leaf cost a tenth of the whole decryption.
        if type(node) in _PLAIN_SCALARS:
            return self._leaf(node, path, loc)
        if isinstance(node, list):
            # sops walks list items with the path of the list: indices are not part of it.
            return [self.walk(item, path, (*loc, i)) for i, item in enumerate(node)]
        if isinstance(node, Mapping):
            if type(node) is not dict and getattr(node, "merge", None):
                raise SopsUnsupported("YAML merge keys (<<) are not supported")
            out = {}
            for raw_key, value in node.items():
                if not isinstance(raw_key, str):
                    raise SopsUnsupported("the document has a key that is not a string")
                key = raw_key if type(raw_key) is str else str(raw_key)
                out[key] = self.walk(value, (*path, key), (*loc, key))
            return out
        return self._leaf(node, path, loc)

    def mac(self) -> str:
        return self._hash.hexdigest().upper()

    def decrypt_mac(self, text: str, additional_data: str) -> str:
        kind, raw = self._open(text, additional_data.encode(), "the MAC")
        if kind != "str":
            raise SopsMacMismatch("the stored MAC is not a string")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise SopsMacMismatch("the stored MAC is not text") from None

    def _leaf(self, node: object, path: tuple[str, ...], loc: tuple[str | int, ...]) -> Any:
        if node is None:
            return None  # sops neither encrypts nor hashes null
        encrypted = self._should_encrypt(path)
        raw: bytes | None = None
        if encrypted:
            where = ":".join(path)
            if not isinstance(node, str):
                raise SopsMacMismatch(f"the value at {where} should be encrypted but is not", loc)
            try:
                value, raw = self._decrypt_value(str(node), path, where)
            except SopsMacMismatch as e:
                raise SopsMacMismatch(str(e), loc) from None
        else:
            value = node if type(node) is str else _plain_scalar(node, ":".join(path))
        if encrypted or not self._meta.mac_only_encrypted:
            self._hash.update(raw if raw is not None else _to_bytes(value))
        return value

    def _should_encrypt(self, path: tuple[str, ...]) -> bool:
        decision = self._decisions.get(path)
        if decision is None:
            decision = self._decide(path)
            self._decisions[path] = decision
        return decision

    def _decide(self, path: tuple[str, ...]) -> bool:
        rule, value = self._meta.rule, self._meta.rule_value
        if rule == "unencrypted_suffix":
            return not any(key.endswith(value) for key in path)
        if rule == "encrypted_suffix":
            return any(key.endswith(value) for key in path)
        if self._regex is None:
            raise SopsUnsupported(f"unknown encryption rule `sops.{rule}`")
        for key in path:
            if not key.isascii() or "\n" in key:
                # Unicode case folding and `$` before a final newline differ between Go and Python.
                raise SopsUnsupported(f"`sops.{rule}` applied to a key with non-ASCII text or a newline")
        matched = any(self._regex.search(key) for key in path)
        return matched if rule == "encrypted_regex" else not matched

    def _decrypt_value(self, text: str, path: tuple[str, ...], where: str) -> tuple[Any, bytes]:
        if text == "":
            return "", b""  # sops leaves empty strings as they are
        kind, raw = self._open(text, (":".join(path) + ":").encode(), f"the value at {where}")
        try:
            decoded = raw.decode()
        except UnicodeDecodeError:
            raise SopsUnsupported(f"the value at {where} is not UTF-8 text") from None
        if kind == "str":
            return decoded, raw
        if kind in ("int", "int64"):
            if _GO_INT_RE.fullmatch(decoded) and _INT64_MIN <= int(decoded) <= _INT64_MAX:
                number = int(decoded)
                return number, str(number).encode()
            raise SopsUnsupported(f"the value at {where} is an int sops would not parse")
        if kind == "float":
            if _GO_DECIMAL_FLOAT_RE.fullmatch(decoded):
                real = float(decoded)
                if math.isfinite(real):
                    return real, _go_format_float(real).encode()
            raise SopsUnsupported(f"the value at {where} is a float this reader does not handle")
        if kind == "bool":
            if decoded in _GO_TRUE:
                return True, b"True"
            if decoded in _GO_FALSE:
                return False, b"False"
            raise SopsUnsupported(f"the value at {where} is a bool sops would not parse")
        raise SopsUnsupported(f"the value at {where} has the type {kind[:20]!r}, not supported in process")

    def _open(self, text: str, additional_data: bytes, what: str) -> tuple[str, bytes]:
        match = _ENC_RE.match(text)
        if match is None:
            raise SopsMacMismatch(f"{what} is not a SOPS-encrypted value")
        try:
            data, iv, tag = (base64.b64decode(match.group(i), validate=True) for i in (1, 2, 3))
        except (binascii.Error, ValueError):
            raise SopsMacMismatch(f"{what} has malformed base64") from None
        try:
            raw = self._aead.decrypt(iv, data + tag, additional_data)
        except (InvalidTag, ValueError):
            raise SopsMacMismatch(f"{what} fails authentication: modified without sops, moved or corrupt") from None
        return match.group(4), raw


def _plain_scalar(node: object, where: str) -> Any:
    """An unencrypted leaf as plain Python, typed as sops' YAML decoder (go-yaml v3) types it."""
    if isinstance(node, bool) or type(node).__name__ == "ScalarBoolean":
        return bool(node)  # ruamel's anchored booleans are an int subclass
    if isinstance(node, int):
        if not _INT64_MIN <= node <= _INT64_MAX:
            raise SopsUnsupported(f"the integer at {where} does not fit 64 bits")
        return int(node)
    if isinstance(node, float):
        if not math.isfinite(node):
            raise SopsUnsupported(f"the number at {where} is infinite or NaN")
        return float(node)
    if isinstance(node, str):
        return str(node)
    # Timestamps (sops hashes them in its own format), binary, tagged scalars...
    raise SopsUnsupported(f"the value at {where} is a {type(node).__name__}, not supported in process")


def _to_bytes(value: Any) -> bytes:
    """sops.ToBytes for the plain scalars _plain_scalar returns."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return _go_format_float(value).encode()
    return str(value).encode()


def _go_format_float(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'f', -1, 64): the shortest round-trip digits, never an exponent."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
