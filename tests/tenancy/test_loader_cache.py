"""Reloading tenants decrypts and validates only the files whose bytes changed; cross-tenant rules still
run over every tenant, and nothing that depends on more than the bytes is remembered."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyrage
import pytest

from tenancy import loader
from tenancy.loader import LoadResult, TenantCache, load_tenants
from tenancy.sops import BinaryThenInProcess, SopsFailed
from tests.cli.test_validate import BASE
from tests.conftest import WriteTenant

BRAVO = BASE.replace("slug: acme", "slug: bravo").replace("106540352242922", "106540352249999").replace(
    "6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70", "7b2d4e1f-9e3c-4d8b-8f2a-3c4d5e6f7a81").replace("17010001", "17019999")


class CountingDecryptor:
    def __init__(self, fail: int = 0) -> None:
        self.inner = BinaryThenInProcess()
        self.calls: list[str] = []
        self.fail = fail

    def decrypt(self, path: Path, document: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(path.name)
        if self.fail:
            self.fail -= 1
            raise SopsFailed("the binary was not reachable")
        return self.inner.decrypt(path, document)


@pytest.fixture
def two_tenants(write_tenant: WriteTenant, tenant_dir: Path) -> Path:
    write_tenant(BASE)
    write_tenant(BRAVO, name="bravo")
    return tenant_dir


def test_a_reload_without_changes_decrypts_nothing(two_tenants: Path) -> None:
    cache, dec = TenantCache(), CountingDecryptor()
    first = load_tenants([two_tenants], dec, cache=cache)
    again = load_tenants([two_tenants], dec, cache=cache)
    assert dec.calls == ["acme.yaml", "bravo.yaml"]
    assert [lt.tenant.slug for lt in again.tenants] == ["acme", "bravo"] == [lt.tenant.slug for lt in first.tenants]


def test_after_one_file_changes_only_that_file_is_decrypted(two_tenants: Path) -> None:
    cache, dec = TenantCache(), CountingDecryptor()
    load_tenants([two_tenants], dec, cache=cache)
    bravo = two_tenants / "bravo.yaml"
    # A plain field edited by hand (mac_only_encrypted: the MAC covers the secrets only).
    bravo.write_text(bravo.read_text().replace("display_name: Acme Stays", "display_name: Bravo Stays"))
    result = load_tenants([two_tenants], dec, cache=cache)
    assert dec.calls == ["acme.yaml", "bravo.yaml", "bravo.yaml"]
    assert result.by_slug()["bravo"].tenant.display_name == "Bravo Stays"


def test_cross_tenant_rules_see_cached_and_changed_tenants_alike(two_tenants: Path) -> None:
    cache, dec = TenantCache(), CountingDecryptor()
    assert load_tenants([two_tenants], dec, cache=cache).ok
    bravo = two_tenants / "bravo.yaml"
    bravo.write_text(bravo.read_text().replace("17019999", "17010001"))  # now shares acme's lock
    result = load_tenants([two_tenants], dec, cache=cache)
    assert [f.rule for f in result.errors] == ["duplicate-routing-key"]
    assert result.errors[0].file == str(bravo) and "already used by tenant 'acme'" in result.errors[0].message
    assert [lt.tenant.slug for lt in result.tenants] == ["acme"]


def test_a_deleted_file_leaves_the_cache(two_tenants: Path) -> None:
    cache = TenantCache()
    load_tenants([two_tenants], CountingDecryptor(), cache=cache)
    (two_tenants / "bravo.yaml").unlink()
    result = load_tenants([two_tenants], CountingDecryptor(), cache=cache)
    assert [lt.tenant.slug for lt in result.tenants] == ["acme"] and len(cache) == 1


def test_a_failed_decryption_is_tried_again_on_the_next_load(two_tenants: Path) -> None:
    cache, dec = TenantCache(), CountingDecryptor(fail=1)
    assert [f.rule for f in load_tenants([two_tenants], dec, cache=cache).errors] == ["sops-decrypt"]
    assert load_tenants([two_tenants], dec, cache=cache).ok
    assert dec.calls == ["acme.yaml", "bravo.yaml", "acme.yaml"]


def test_the_process_cache_does_not_outlive_a_change_of_keys(two_tenants: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_tenants([two_tenants], check_config=False).ok  # default decryptor: the process cache
    other = tmp_path / "other.agekey"
    other.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other))
    result = load_tenants([two_tenants], check_config=False)
    assert {f.rule for f in result.errors} == {"sops-decrypt"} and result.tenants == []


def test_the_servers_sighup_decrypts_only_the_changed_file(tmp_path: Path) -> None:
    """Through the real server: the gunicorn master keeps its cache across SIGHUP reloads."""
    import httpx

    from tests.webhook_server.helpers import SECRETS, tenant_dicts
    from tests.webhook_server.server_harness import hosp, make_tenants_dir, start_server
    from tests.webhook_server.server_harness import write_tenant as write_plain_tenant

    tenants = tenant_dicts()
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenants))
    try:
        server.wait_for_log("tenant files: 3, decrypted and validated afresh: 3")
        blue = tenants[1]
        new_secret = "blue-hospitable-rotated-5e8d1c"
        blue["hospitable"]["webhook_secret"] = new_secret
        write_plain_tenant(server.tenants, blue)  # encrypted again: new bytes, new data key
        server.hup()
        server.wait_for_log("tenant files: 3, decrypted and validated afresh: 1")
        server.wait_for_log("routing reloaded: 3 tenant(s)")
        with httpx.Client(base_url=server.url, timeout=10) as client:
            deadline = time.monotonic() + 15  # until the workers forked after the reload answer
            while hosp(client, "evt-new-secret", "blue-harbor", new_secret).status_code != 200:
                assert time.monotonic() < deadline, server.logs()[-3000:]
                time.sleep(0.1)
            assert hosp(client, "evt-acme", "acme", SECRETS["acme"]["hospitable"]).status_code == 200
            assert hosp(client, "evt-old-secret", "blue-harbor",
                        SECRETS["blue-harbor"]["hospitable"]).status_code == 401
        assert new_secret not in server.logs()
    finally:
        server.stop()


def _counting_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    # The loader forks only a single-threaded process (a fork copies one thread; another's lock would stay
    # held in the child): threads an earlier test of this process left running would make it load serially.
    deadline = time.monotonic() + 5
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    assert not others, f"threads left running by an earlier test keep the loader from forking: {others}"
    forks: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", fork)
    return forks


def _same(a: LoadResult, b: LoadResult) -> None:
    assert [lt.tenant for lt in a.tenants] == [lt.tenant for lt in b.tenants]
    assert a.findings == b.findings and a.fresh == b.fresh == a.files


def test_a_large_start_up_load_shared_with_a_forked_child_gives_the_same_result(
        two_tenants: Path, write_tenant: WriteTenant, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tenant(BASE.replace("slug: acme", "slug: wrong"), name="clash")  # findings must travel back too
    serial = load_tenants([two_tenants], cache=TenantCache())
    monkeypatch.setattr(loader, "SPLIT_MIN_FILES", 2)
    forks = _counting_forks(monkeypatch)
    split = load_tenants([two_tenants], cache=TenantCache())
    assert forks == [1]
    _same(split, serial)
    assert any(f.rule == "slug-file-name" for f in split.findings)


def test_when_the_child_fails_the_parent_loads_its_share(two_tenants: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    serial = load_tenants([two_tenants], cache=TenantCache())
    monkeypatch.setattr(loader, "SPLIT_MIN_FILES", 2)
    parent, real = os.getpid(), loader._load_text

    def dies_in_the_child(*args: Any) -> Any:
        if os.getpid() != parent:
            raise RuntimeError("the child fails")
        return real(*args)

    monkeypatch.setattr(loader, "_load_text", dies_in_the_child)
    forks = _counting_forks(monkeypatch)
    _same(load_tenants([two_tenants], cache=TenantCache()), serial)
    assert forks == [1]
