"""Load tenant files: read → parse → check encryption → decrypt → validate → cross-tenant rules.

Every problem becomes a Finding with file, line, column and field path; loading never stops at the first
one, so `tenantctl validate` prints everything at once. Values of secret fields never enter a message.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import os
import pickle
import stat
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tenancy import rules
from tenancy.findings import Finding, Severity, field_path
from tenancy.hosts import check_destination_url, check_device_host
from tenancy.model import PLACEHOLDER, Tenant, secret_field_names
from tenancy.redact import REDACTOR
from tenancy.sops import BinaryThenInProcess, Decryptor, SopsError
from tenancy.sops_config import SOPS_CONFIG_NAME, check_sops_config
from tenancy.yaml_source import Document, Position, YamlError, parse_fast
from tenancy.yaml_source import Path as YPath

SECRET_FIELDS = secret_field_names()
ENC_PREFIX = "ENC[AES256_GCM,"
# The largest tenant file read. The encrypted examples are 2-4 KB for 2-6 properties and teammates
# (~0.5 KB each), so 256 KiB holds several hundred; past it a file is a mistake or an attack, and
# reading, parsing and decrypting it would cost seconds and hundreds of MB (a 5.9 MB file: 20 s, 718 MB).
MAX_TENANT_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class LoadedTenant:
    """A validated tenant, its file, and where its fields stand in that file (found on first use)."""

    tenant: Tenant
    path: Path
    doc: Document = field(repr=False, compare=False)

    def where(self, path: YPath) -> Position:
        return self.doc.position(path)


@dataclass
class LoadResult:
    tenants: list[LoadedTenant] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    # Files read, decrypted and validated by this load; the others' outcomes came from the cache.
    fresh: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_slug(self) -> dict[str, LoadedTenant]:
        return {t.tenant.slug: t for t in self.tenants}


def tenant_files(paths: Sequence[Path]) -> tuple[list[Path], list[Finding]]:
    """The tenant files named by PATHs (files or directories), sorted; odd names become findings, and so does
    a path that cannot be read (a directory this user may not list, a file in one it may not enter)."""
    files: list[Path] = []
    findings: list[Finding] = []
    for p in paths:
        try:
            _collect(p, files, findings)
        except OSError as e:
            findings.append(Finding(str(p), 1, 1, "", f"cannot read it: {e.strerror or type(e).__name__}",
                                    "give the user running tenantctl read access to it", rule="unreadable"))
    return files, findings


def _collect(p: Path, files: list[Path], findings: list[Finding]) -> None:
    """tenant_files for one PATH: appends to FILES and FINDINGS; raises OSError when P cannot be read."""
    if p.is_dir():
        # scandir: the entries' types come with the listing (no stat per file), and names sort as
        # strings (Path comparisons cost ~0.2 s per 10,000 files), in the order sorted(iterdir()) gives.
        with os.scandir(p) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = p / entry.name
            if entry.is_symlink() and child.suffix in (".yaml", ".yml"):
                refused = _link_refused(child, p)
                if refused:
                    findings.append(refused)
                    continue
            try:
                regular = entry.is_file()
            except OSError:  # a link of another name (notes, README) that loops: not a tenant file
                regular = False
            if not regular:
                if child.suffix in (".yaml", ".yml") and child.exists():
                    findings.append(_not_regular(child))  # a FIFO, socket or device named like a tenant
                continue
            if child.suffix == ".yaml":
                files.append(child)
            elif child.suffix == ".yml":
                findings.append(
                    Finding(str(child), 1, 1, "", "tenant files end in .yaml", f"rename it to {child.stem}.yaml",
                            rule="file-name")
                )
    elif p.is_file():
        refused = _link_refused(p, p.parent) if p.is_symlink() else None
        if refused:
            findings.append(refused)
        else:
            files.append(p)
    elif p.is_symlink():  # named on the command line: a link that dangles or loops, as in a directory
        findings.append(_link_refused(p, p.parent) or _not_regular(p))
    elif p.exists():  # a FIFO, socket or device: `stat` works, `is_file` says no
        findings.append(_not_regular(p))
    else:
        findings.append(Finding(str(p), 1, 1, "", "no such file or directory", rule="missing-path"))


def _not_regular(path: Path) -> Finding:
    return Finding(str(path), 1, 1, "", "not a regular file",
                   "a tenant file is a plain file: remove what is there and put the YAML file in its place",
                   rule="unreadable")


_LINK_HINT = "copy the file into the tenants directory instead of linking to it"
_LINK_LOOPS = "a symbolic link that loops (it never reaches a file)"
_LINK_LEAVES = "a symbolic link that leads outside the tenants directory"


def _link_refused(link: Path, directory: Path) -> Finding | None:
    """A finding when LINK (a symlink) is dangling, loops or resolves outside DIRECTORY: a link out could
    make the server load and serve any file this user can read (`/proc/self/environ` included)."""
    try:
        target = link.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return _bad_link(link, _LINK_LOOPS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return _bad_link(link, _LINK_LOOPS)
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return _bad_link(link, "a symbolic link to nothing (its target is missing)")
        target = link.resolve()  # unreachable (EACCES): the target may exist; judge where the link points
        if not target.is_relative_to(directory.resolve()):
            return _bad_link(link, _LINK_LEAVES)
        return _bad_link(link, f"a symbolic link whose target cannot be reached ({e.strerror})")
    try:
        os.stat(link)  # Python follows any chain; the kernel (open, stat) gives up after 40 links
    except OSError as e:
        if e.errno == errno.ELOOP:
            return _bad_link(link, "a chain of symbolic links too long to follow (it never reaches a file)")
    try:
        inside = target.is_relative_to(directory.resolve(strict=True))
    except OSError:
        inside = False
    if inside:
        return None
    return _bad_link(link, _LINK_LEAVES)


def _bad_link(link: Path, message: str) -> Finding:
    return Finding(str(link), 1, 1, "", message, _LINK_HINT, rule="symlink")


def read_tenant_text(path: Path) -> str:
    """The text of one tenant file, refusing what is not a bounded regular file inside its directory.

    Raises TenantFileRefused (a located Finding inside). The size is checked on the open file, and at
    most MAX_TENANT_FILE_BYTES + 1 bytes are read, so a file that grows or lies about its size is bounded.
    """
    name = str(path)
    # O_NOFOLLOW: a symbolic link is not followed (the open fails with ELOOP: then, and only then, the link
    # is checked and its target opened, so a plain file costs no lstat); a link swapped in after that check
    # is not followed either. O_NONBLOCK: nor does a FIFO swapped in wait for a writer.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno != errno.ELOOP or not path.is_symlink():
                raise
            if refused := _link_refused(path, path.parent):
                raise TenantFileRefused(refused) from None
            fd = os.open(path.resolve(strict=True), flags)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise TenantFileRefused(Finding(name, 1, 1, "", "not a regular file", rule="unreadable"))
            if st.st_size > MAX_TENANT_FILE_BYTES:
                raise TenantFileRefused(_too_big(name, st.st_size))
            raw = fh.read(MAX_TENANT_FILE_BYTES + 1)
    except OSError as e:
        raise TenantFileRefused(Finding(name, 1, 1, "", f"cannot read the file: {e.__class__.__name__}",
                                        rule="unreadable")) from None
    if len(raw) > MAX_TENANT_FILE_BYTES:
        raise TenantFileRefused(_too_big(name, None))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TenantFileRefused(Finding(name, 1, 1, "", "cannot read the file: not UTF-8 text",
                                        rule="unreadable")) from None


def _too_big(name: str, size: int | None) -> Finding:
    got = f"{size:,} bytes" if size is not None else "more than that"
    return Finding(name, 1, 1, "", f"the file is too large ({got}); a tenant file is at most "
                   f"{MAX_TENANT_FILE_BYTES:,} bytes ({MAX_TENANT_FILE_BYTES // 1024} KiB)",
                   "a tenant file holds one company's integrations: remove what does not belong there",
                   rule="file-size")


class TenantFileRefused(Exception):
    """A tenant file that is not read at all (a link leaving the directory, too large, not a file)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def load_file(path: Path, decryptor: Decryptor) -> tuple[LoadedTenant | None, list[Finding]]:
    """Load one tenant file; returns the tenant when it is valid on its own, and every finding."""
    try:
        text = read_tenant_text(path)
    except TenantFileRefused as e:
        return None, [e.finding]
    return _load_text(path, text, decryptor)


def _load_text(path: Path, text: str, decryptor: Decryptor) -> tuple[LoadedTenant | None, list[Finding]]:
    name = str(path)
    try:
        doc = parse_fast(text)
    except YamlError as e:
        pos = e.position or Position(1, 1)
        hint = e.hint or ("keep one of the two" if e.path else "fix the YAML syntax")
        return None, [Finding(name, pos.line, pos.column, field_path(e.path), e.message, hint, rule="yaml")]
    if not isinstance(doc.data, dict):
        return None, [Finding(name, 1, 1, "", "a tenant file is a mapping of fields", rule="not-a-mapping")]

    findings = list(_plaintext_secrets(name, doc, encrypted="sops" in doc.data))
    metadata = doc.data.get("sops")
    has_ciphertext = any(True for _ in _encrypted_values(doc.data))
    plain: dict[str, Any] | None
    if findings and metadata is not None:
        plain = None  # half-encrypted: sops cannot decrypt it; the plaintext secret is the error to fix
    elif metadata is None:
        if has_ciphertext:
            pos = doc.position(())
            findings.append(Finding(name, pos.line, pos.column, "sops", "encrypted values but no `sops` metadata",
                                    "restore the file from git; the data key is lost without its metadata",
                                    rule="sops-metadata"))
            plain = None
        else:
            plain = dict(doc.data)
    else:
        try:
            plain = decryptor.decrypt(path, doc.data)
        except SopsError as e:
            # A value whose own tag fails is reported at that value; the document's MAC at `sops:`.
            where: tuple[str | int, ...] = getattr(e, "location", None) or ("sops",)
            pos = doc.position(where)
            findings.append(Finding(name, pos.line, pos.column, field_path(where), str(e), _sops_hint(e),
                                    rule="sops-decrypt"))
            plain = None
    if plain is None:
        return None, findings

    plain.pop("sops", None)
    placeholders = may_hold_placeholder(plain)
    try:
        tenant = Tenant.model_validate(plain)
    except ValidationError as e:
        findings.extend(_validation_findings(name, doc, e, plain))
        return None, findings
    if findings:  # a plaintext file: its other problems are reported with it, but it is never served
        findings.extend(rules.tenant_findings(LoadedTenant(tenant=tenant, path=path, doc=doc),
                                              placeholders=placeholders))
        return None, findings

    # Kept for as long as the tenant is: positions only (the encrypted values are not needed again).
    loaded = LoadedTenant(tenant=tenant, path=path, doc=doc.without_data())
    if tenant.slug != path.stem:
        pos = doc.position(("slug",))
        findings.append(Finding(name, pos.line, pos.column, "slug",
                                f"slug {tenant.slug!r} does not match the file name {path.name!r}",
                                f"rename the file to {tenant.slug}.yaml or set slug: {path.stem}",
                                rule="slug-file-name"))
    findings.extend(rules.tenant_findings(loaded, placeholders=placeholders))
    return loaded, findings


def may_hold_placeholder(data: Mapping[str, Any]) -> bool:
    """False only when no value of DATA (a decrypted tenant document) contains the placeholder: its JSON
    text, written in C, is searched instead of walking the validated model (~30 us against ~70 us a file).
    True when unsure (a key JSON cannot write)."""
    try:
        return PLACEHOLDER in json.dumps(data, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return True


def _sops_hint(e: SopsError) -> str:
    from tenancy.sops import SopsMacMismatch, SopsNoMatchingKey

    if isinstance(e, SopsMacMismatch):
        return "the file was edited without sops: edit secrets with `sops tenants/<slug>.yaml`, or restore it"
    if isinstance(e, SopsNoMatchingKey):
        return "set SOPS_AGE_KEY_FILE to an age key listed under `sops.age` in the file"
    return "run `sops decrypt` on the file for details"


def _encrypted_values(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k != "sops":
                yield from _encrypted_values(v)
    elif isinstance(node, list):
        for v in node:
            yield from _encrypted_values(v)
    elif isinstance(node, str) and node.startswith(ENC_PREFIX):
        yield node


def _plaintext_secrets(name: str, doc: Document, *, encrypted: bool) -> Iterator[Finding]:
    yield from _plaintext_secrets_under(doc.data, (), name, doc, encrypted)


# A module function, not a recursive closure: a closure that calls itself is a reference cycle, and every
# file's cycle kept its whole document alive until a collection (10,000 files: 290,000 objects, ~1 s of CPU
# in the collection that followed the load).
def _plaintext_secrets_under(node: Any, path: YPath, name: str, doc: Document, encrypted: bool) -> Iterator[Finding]:
    if isinstance(node, dict):
        for k, v in node.items():
            if path == () and k == "sops":
                continue
            here = (*path, k)
            if k in SECRET_FIELDS and v is not None and not isinstance(v, dict | list):
                # sops leaves "" unencrypted: nothing is exposed, and the empty-secret rule reports it.
                if not (isinstance(v, str) and (v.startswith(ENC_PREFIX) or v == "")):
                    pos = doc.keys.get(here, doc.position(here))
                    index = "".join(f'["{p}"]' if isinstance(p, str) else f"[{p}]" for p in here)
                    how = (f"set it through sops: `sops set {name} '{index}' '\"<value>\"'` (or `sops edit`)"
                           if encrypted else f"encrypt the file: `sops encrypt --in-place {name}`")
                    yield Finding(name, pos.line, pos.column, field_path(here),
                                  "secret is not encrypted (plaintext in git)",
                                  f"{how}, then rotate the secret: it has been exposed", rule="plaintext-secret")
            else:
                yield from _plaintext_secrets_under(v, here, name, doc, encrypted)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _plaintext_secrets_under(v, (*path, i), name, doc, encrypted)


_SCHEMA_HINT = "see the field in schemas/tenant.schema.json (editors show it as you type)"
_TYPE_HINTS = {
    "int": "use a whole number",
    "float": "use a number",
    "bool": "use true or false",
    "enum": "use one of the values listed above",
    "literal": "use one of the values listed above",
    "string": "check the value's format: " + _SCHEMA_HINT,
    "list": "use a list: [a, b] or one `- item` per line",
    "model": "use a mapping of fields",
    "dict": "use a mapping of fields",
    "value": "",
    "time": "use HH:MM",
    "date": "use YYYY-MM-DD",
}


# Fixes for the fields whose own validators refuse a value (the message says what is wrong).
_FIELD_HINTS = {
    "host": "use the device's DNS name or its address on the site's network (rule: docs/tenant-file.md)",
    "keypad_code": "choose 6 digits from 1 to 9 that do not start with 12",
    "intercom_pin": "use 4 to 16 digits",
}


_DELIVERY_HINT = ("use the platform's https URL: a DNS name, or a dotted-quad or [IPv6] address (loopback and "
                  "private ranges allowed; rule: docs/delivery.md)")


def _value_at(data: Any, loc: tuple[str | int, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


_QUOTE_HINT = "quote it: YAML reads 034567 as an octal number (write \"034567\"), 1e5 as 100000.0, yes as text"


def _secret_problem(e: Any, value: Any) -> tuple[str, str] | None:
    """Message and hint for a secret field's type or length error; never the value itself."""
    kind = e["type"]
    if kind == "string_type" and isinstance(value, bool):
        return ("a secret written as a YAML boolean (true/false) is not text",
                "quote it: YAML reads an unquoted true or false as a boolean, not as the secret's text")
    if kind == "string_type" and isinstance(value, int | float):
        what = "integer" if isinstance(value, int) else "number"
        return f"a secret written as a YAML {what} loses its exact digits", _QUOTE_HINT
    if kind == "string_type" and value is None:
        return ("a secret is empty", "set its value with sops (`sops <file>`), or remove the field if it is optional")
    if kind == "too_short":
        return ("a secret is empty or only whitespace: the server would refuse every event signed for this tenant",
                "set the real value with sops (`sops <file>`), or remove the field if it is optional")
    if kind == "too_long":
        return (f"a secret is longer than {e['ctx']['max_length']:,} characters",
                "check that the whole value belongs to this field")
    return None


def _validation_findings(name: str, doc: Document, err: ValidationError,
                         plain: dict[str, Any]) -> Iterator[Finding]:
    for e in err.errors(include_input=False, include_url=False):
        loc = tuple(e["loc"])
        pos = doc.position(loc)
        msg = e["msg"]
        value = _value_at(plain, loc) if loc else None
        secret = _secret_problem(e, value) if loc and loc[-1] in SECRET_FIELDS else None
        if secret is not None:
            msg, hint = secret
        elif loc[-1:] == ("host",) and e["type"] == "string_type" and type(value) is int:
            # YAML read 2130706433 or 0x7f000001 as a number: it is an IPv4 address in a refused form.
            msg, hint = f"not a device host: {check_device_host(str(value))}", _FIELD_HINTS["host"]
        elif loc[:1] == ("delivery",) and len(loc) == 2 and e["type"] in ("string_pattern_mismatch", "value_error"):
            # The pattern is for editors; the rule's reason says what is wrong (never quoting the value).
            why = check_destination_url(value) if isinstance(value, str) else None
            msg = f"not a delivery destination: {why}" if why else msg.removeprefix("Value error, ")
            hint = _DELIVERY_HINT
        elif e["type"] == "extra_forbidden":
            msg, hint = "unknown field", "remove it or fix its spelling (see schemas/tenant.schema.json)"
        elif e["type"] == "missing":
            msg, hint = "required field is missing", "add it"
        else:
            msg = msg.removeprefix("Value error, ")
            hint = _FIELD_HINTS.get(str(loc[-1]) if loc else "", "") if e["type"] == "value_error" else ""
            hint = hint or _TYPE_HINTS.get(e["type"].split("_")[0], _SCHEMA_HINT)
        yield Finding(name, pos.line, pos.column, field_path(loc), msg, hint, rule=f"schema.{e['type']}")


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    loaded: LoadedTenant | None
    findings: tuple[Finding, ...]


class TenantCache:
    """What loading each file gave, kept while the file's bytes and the age keys in the environment stay
    the same, so a reload (the server's SIGHUP) decrypts and validates only the files that changed.

    One entry per path (the latest content); entries of files that disappeared from a loaded directory
    are dropped. A file that could not be read or decrypted is never cached: the next load tries again.
    Thread-safe.
    """

    def __init__(self) -> None:
        # By the path's text: hashing and comparing Path objects cost ~0.1 s per 10,000 files a reload.
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: Path, digest: bytes) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(str(path))
        return entry if entry is not None and entry.digest == digest else None

    def put(self, path: Path, entry: _Entry) -> None:
        if any(f.rule in _UNCACHED_RULES for f in entry.findings):
            with self._lock:
                self._entries.pop(str(path), None)
            return
        with self._lock:
            self._entries[str(path)] = entry

    def forget_except(self, directories: Sequence[Path], kept: set[Path]) -> None:
        """Drop the entries of files inside DIRECTORIES that are not in KEPT (deleted or renamed)."""
        dirs, keep = {str(d) for d in directories}, {str(p) for p in kept}
        with self._lock:
            for path in [p for p in self._entries if (os.path.dirname(p) or ".") in dirs and p not in keep]:
                del self._entries[path]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Outcomes that depend on more than the file's bytes (the key store, the sops binary, the file system).
_UNCACHED_RULES = frozenset({"sops-decrypt", "unreadable"})
# The process's cache, used when load_tenants decrypts with the default keys from the environment.
PROCESS_CACHE = TenantCache()


def _keys_fingerprint() -> bytes:
    """A digest of the age keys the default decryptor would use: other keys may open other files."""
    h = hashlib.sha256(os.environ.get("SOPS_AGE_KEY", "").encode())
    key_file = os.environ.get("SOPS_AGE_KEY_FILE")
    if key_file:
        h.update(b"\0" + key_file.encode())
        with contextlib.suppress(OSError):
            h.update(b"\0" + Path(key_file).read_bytes())
    return h.digest()


_Outcome = tuple[LoadedTenant | None, list[Finding], bool]  # (tenant, findings, fresh: not from the cache)
# Fewer fresh files than this load in the process itself: a fork and the transfer back cost more.
SPLIT_MIN_FILES = 1000
# The child's share of the fresh files, more than half: the parent alone has read and hashed every file
# first, and takes the child's results in and registers every tenant's secrets after (10,000 files: the
# two processes' CPU times within ~5% of each other at 0.55).
_CHILD_SHARE = 0.55


def _load_all(files: Sequence[Path], dec: Decryptor, cache: TenantCache | None, keys: bytes, *,
              split: bool) -> list[_Outcome]:
    """Each file's outcome, in order: from CACHE when its bytes (and KEYS) are unchanged, else loaded
    afresh (and cached); with SPLIT, a large batch of fresh files is shared with a forked child."""
    outcomes: list[_Outcome | None] = [None] * len(files)
    todo: list[tuple[int, str, bytes]] = []  # (index, text, digest) of the files to load afresh
    for i, path in enumerate(files):
        try:
            text = read_tenant_text(path)
        except TenantFileRefused as e:
            outcomes[i] = (None, [e.finding], True)
            continue
        digest = hashlib.sha256(keys + text.encode("utf-8")).digest() if cache is not None else b""
        entry = cache.get(path, digest) if cache is not None else None
        if entry is not None:
            outcomes[i] = (entry.loaded, list(entry.findings), False)
        else:
            todo.append((i, text, digest))
    items = [(files[i], text) for i, text, _ in todo]
    use_fork = split and len(items) >= SPLIT_MIN_FILES and _can_fork()
    loaded_now = _load_split(items, dec) if use_fork else [_load_text(p, t, dec) for p, t in items]
    for (i, _, digest), (loaded, found) in zip(todo, loaded_now, strict=True):
        outcomes[i] = (loaded, found, True)
        if cache is not None:
            cache.put(files[i], _Entry(digest, loaded, tuple(found)))
    return [o for o in outcomes if o is not None]


def _can_fork() -> bool:
    # A fork copies only the calling thread: another thread's held lock would stay held in the child.
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1 and threading.active_count() == 1


_Loaded = tuple[LoadedTenant | None, list[Finding]]
_Sent = tuple[Tenant | None, list[Finding]]  # what the child sends back for one file


def _load_split(items: Sequence[tuple[Path, str]], dec: Decryptor) -> list[_Loaded]:
    """Load ITEMS with a forked child taking the last share.

    The child sends back each file's tenant and findings (tenants, secrets included, through a pipe, never
    a file), not the file's positions: the parent holds every file's text, and positions are found from
    it on first use (a finding's). That keeps the trip back at ~0.08 ms of CPU per file, against 0.5 ms
    when whole documents were pickled. The child exits without running exit handlers. Whatever goes wrong
    there (it dies, sends something short), the parent loads the child's share itself: the outcome never
    depends on the child.
    """
    cut = len(items) - int(len(items) * _CHILD_SHARE)
    mine, theirs = items[:cut], items[cut:]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load, send, leave (no atexit, no flushing of the parent's buffers)
        status = 1
        try:
            os.close(read_end)
            sent: list[_Sent] = [(lt.tenant if lt is not None else None, found)
                                 for lt, found in (_load_text(p, t, dec) for p, t in theirs)]
            data = pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    own = [_load_text(p, t, dec) for p, t in mine]
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    with contextlib.suppress(ChildProcessError):  # a gunicorn master may have reaped it already
        os.waitpid(pid, 0)
    try:
        received = pickle.loads(data)  # noqa: S301  # our own child's bytes, through our own pipe
        if not isinstance(received, list) or len(received) != len(theirs):
            raise ValueError("short")
        return own + [(LoadedTenant(tenant, p, Document.deferred(t)) if tenant is not None else None, found)
                      for (tenant, found), (p, t) in zip(received, theirs, strict=True)]
    except Exception:  # the child failed: its share is loaded here
        return own + [_load_text(p, t, dec) for p, t in theirs]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while files load, as it was before afterwards.

    Loading allocates ~400 objects per file that all stay alive, so every collection walks all of them
    again and finds nothing (10,000 files, the same minute on a busy machine: 11.3 s of CPU with it on,
    10.3 s off). Loading makes next to no reference cycles (7 objects for 1,000 files).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_tenants(
    paths: Sequence[Path],
    decryptor: Decryptor | None = None,
    *,
    check_config: bool = True,
    cache: TenantCache | None = None,
) -> LoadResult:
    """Load and validate every tenant under PATHs, then apply the cross-tenant rules.

    Files whose bytes are unchanged since the last load come from CACHE (by default PROCESS_CACHE when
    no decryptor is given; none when one is, since its keys are unknown). The cross-tenant rules always
    run over every tenant. The cyclic garbage collector is paused while the files load.
    """
    files, findings = tenant_files(paths)
    result = LoadResult(findings=findings, files=len(files))
    # ~0.8 ms of CPU per fresh tenant (a busy 2-core machine; 1.1 ms before parse_fast); from SPLIT_MIN_FILES
    # on, a forked child takes a share (a process pool measured no faster: it ships every file both ways).
    dec = decryptor or BinaryThenInProcess()
    if cache is None and decryptor is None:
        cache = PROCESS_CACHE
    keys = _keys_fingerprint() if cache is not None else b""
    with _collector_paused():
        # The fork splits only with our own decryptor: a given one may count or hold state.
        outcomes = _load_all(files, dec, cache, keys, split=decryptor is None)
    if cache is not None:
        cache.forget_except([p for p in paths if p.is_dir()], set(files))
    validated: list[LoadedTenant] = []  # every tenant the model accepted, errors or not
    for loaded, found, fresh in outcomes:
        result.fresh += fresh
        result.findings.extend(found)
        if loaded is not None:
            validated.append(loaded)
            if fresh:  # a cached tenant's secrets were registered when it was loaded (REDACTOR never forgets)
                REDACTOR.add_model(loaded.tenant)
            if not any(f.severity is Severity.ERROR for f in found):
                result.tenants.append(loaded)
    result.tenants.sort(key=lambda t: t.tenant.slug)
    # Across every validated tenant, so one run reports a collision next to the tenant's other errors.
    validated.sort(key=lambda t: t.tenant.slug)
    cross = list(rules.cross_tenant_findings(validated))
    result.findings.extend(cross)
    # A tenant involved in a collision is not served: which of the two owns the key is unknown.
    clashing = {f.file for f in cross if f.severity is Severity.ERROR}
    result.tenants = [t for t in result.tenants if str(t.path) not in clashing]
    if check_config:
        for d in {p if p.is_dir() else p.parent for p in paths if p.exists()}:
            result.findings.extend(check_sops_config(d / SOPS_CONFIG_NAME))
    result.findings.sort()
    return result
