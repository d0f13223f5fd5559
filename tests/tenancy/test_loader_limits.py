"""What the loader refuses before it spends time or memory: aliases, oversize files, links out of the directory;
and what write-back refuses: a tenant file that is a symbolic link."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tenancy.loader import MAX_TENANT_FILE_BYTES, load_tenants
from tenancy.sops import SopsRefused, set_value
from tenancy.sops_config import SOPS_CONFIG_NAME
from tenancy.yaml_source import YamlError, parse
from tests.cli.test_validate import ALIAS_BOMB, BASE
from tests.conftest import REPO, WriteTenant

ALIASED_SOPS_CONFIG = "keys:\n  - &team age1abc\ncreation_rules:\n  - path_regex: x\n    age: *team\n"


def _load_timed(directory: Path) -> tuple[list[str], list[str], float]:
    start = time.perf_counter()
    result = load_tenants([directory], check_config=False)
    elapsed = time.perf_counter() - start
    return [lt.tenant.slug for lt in result.tenants], [f.text() for f in result.errors], elapsed


def test_an_alias_bomb_fails_in_well_under_a_second(tenant_dir: Path) -> None:
    (tenant_dir / "acme.yaml").write_text(ALIAS_BOMB)
    slugs, errors, elapsed = _load_timed(tenant_dir)
    assert slugs == [] and len(errors) == 1
    assert "anchors and aliases are not allowed in tenant files" in errors[0]
    assert elapsed < 1.0, elapsed


@pytest.mark.parametrize("size", [MAX_TENANT_FILE_BYTES + 1, 40_000_000])
def test_a_file_past_the_size_limit_is_refused_before_it_is_read(tenant_dir: Path, size: int) -> None:
    text = BASE.replace("Acme Stays", "A" * (size - len(BASE) + len("Acme Stays")))
    (tenant_dir / "acme.yaml").write_text(text)
    slugs, errors, elapsed = _load_timed(tenant_dir)
    assert slugs == [] and len(errors) == 1
    assert errors[0].startswith(f"{tenant_dir / 'acme.yaml'}:1:1: the file is too large ({size:,} bytes)")
    assert elapsed < 1.0, elapsed


def test_anchored_recipients_in_sops_config_still_parse_within_a_node_budget() -> None:
    assert parse(ALIASED_SOPS_CONFIG, aliases=True).data["creation_rules"][0]["age"] == "age1abc"
    with pytest.raises(YamlError, match="anchors and aliases are not allowed"):
        parse(ALIASED_SOPS_CONFIG)
    with pytest.raises(YamlError, match="too many nodes"):
        parse(ALIAS_BOMB, aliases=True)


def test_the_loader_serves_no_tenant_through_a_link_out_of_the_directory(write_tenant: WriteTenant,
                                                                         tenant_dir: Path, tmp_path: Path) -> None:
    real = write_tenant(BASE)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    moved = real.rename(outside / "acme.yaml")
    (tenant_dir / "acme.yaml").symlink_to(moved)
    slugs, errors, _ = _load_timed(tenant_dir)
    assert slugs == []
    assert errors == [f"{tenant_dir / 'acme.yaml'}:1:1: a symbolic link that leads outside the tenants directory\n"
                      "    → copy the file into the tenants directory instead of linking to it"]


def test_a_dangling_link_is_refused_as_one_to_nothing(tenant_dir: Path) -> None:
    (tenant_dir / "acme.yaml").symlink_to(tenant_dir / "gone.yaml")
    _, errors, _ = _load_timed(tenant_dir)
    assert [e.splitlines()[0] for e in errors] == [
        f"{tenant_dir / 'acme.yaml'}:1:1: a symbolic link to nothing (its target is missing)"]


def test_a_link_loop_is_refused_as_a_loop_without_hanging(tenant_dir: Path) -> None:
    (tenant_dir / "acme.yaml").symlink_to(tenant_dir / "beta.yaml")
    (tenant_dir / "beta.yaml").symlink_to(tenant_dir / "acme.yaml")
    _, errors, _ = _load_timed(tenant_dir)
    assert [e.splitlines()[0] for e in errors] == [
        f"{tenant_dir / name}:1:1: a symbolic link that loops (it never reaches a file)"
        for name in ("acme.yaml", "beta.yaml")]


def test_a_loop_of_another_name_is_passed_over_and_a_long_chain_refused(write_tenant: WriteTenant,
                                                                        tenant_dir: Path) -> None:
    # `notes -> notes` is no tenant file: it must not end the load with ELOOP. A chain of 41 links reaches a file
    # for Python's resolve() but not for the kernel's open/stat (40 at most): refused, not silently skipped.
    write_tenant(BASE)
    (tenant_dir / "notes").symlink_to(tenant_dir / "notes")
    previous = tenant_dir / "acme.yaml"
    for i in range(41):
        link = tenant_dir / f"link{i}"
        link.symlink_to(previous)
        previous = link
    (tenant_dir / "beta.yaml").symlink_to(previous)
    slugs, errors, _ = _load_timed(tenant_dir)
    assert slugs == ["acme"]
    assert [e.splitlines()[0] for e in errors] == [
        f"{tenant_dir / 'beta.yaml'}:1:1: a chain of symbolic links too long to follow (it never reaches a file)"]


def test_a_link_named_on_the_command_line_is_named_as_what_it_is(tenant_dir: Path) -> None:
    (tenant_dir / "acme.yaml").symlink_to(tenant_dir / "gone.yaml")
    (tenant_dir / "beta.yaml").symlink_to(tenant_dir / "beta.yaml")
    result = load_tenants([tenant_dir / "acme.yaml", tenant_dir / "beta.yaml"], check_config=False)
    assert [f.message for f in result.errors] == ["a symbolic link to nothing (its target is missing)",
                                                  "a symbolic link that loops (it never reaches a file)"]


def test_write_back_through_a_link_is_refused_and_changes_nothing(write_tenant: WriteTenant,
                                                                  tenant_dir: Path) -> None:
    real = write_tenant(BASE)
    (tenant_dir / "archive").mkdir()
    target = real.rename(tenant_dir / "archive" / "acme.yaml")
    link = tenant_dir / "acme.yaml"
    link.symlink_to(target)
    before = target.read_bytes()
    with pytest.raises(SopsRefused, match="symbolic link: write-back refused"):
        set_value(link, tenant_dir / SOPS_CONFIG_NAME, ["nuki", "webhook_secret"], "new-secret-value-1")
    assert target.read_bytes() == before


def test_write_back_to_the_file_itself_still_works(write_tenant: WriteTenant, tenant_dir: Path) -> None:
    path = write_tenant(BASE)
    set_value(path, tenant_dir / SOPS_CONFIG_NAME, ["nuki", "webhook_secret"], "new-secret-value-1")
    [lt] = load_tenants([tenant_dir], check_config=False).tenants
    assert lt.tenant.nuki is not None and lt.tenant.nuki.webhook_secret is not None
    assert lt.tenant.nuki.webhook_secret.get_secret_value() == "new-secret-value-1"


def test_a_tenants_directory_it_may_not_list_is_a_finding_naming_it(write_tenant: WriteTenant,
                                                                    tenant_dir: Path) -> None:
    """What the server's reload meets when the directory's permissions change under it: a finding that names the
    directory (the reload is refused with it), not a bare PermissionError."""
    import os
    import shutil
    import subprocess
    import sys

    write_tenant(BASE)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that bypass permissions, as a user has none
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to drop the permission-override capabilities")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    code = ("import sys; from pathlib import Path; from tenancy.loader import tenant_files\n"
            "files, findings = tenant_files([Path(sys.argv[1])])\n"
            "print(files, [f'{f.file}: {f.message} ({f.rule})' for f in findings])")
    tenant_dir.chmod(0o000)
    try:
        out = subprocess.run([*prefix, sys.executable, "-c", code, str(tenant_dir)], capture_output=True, text=True,
                             timeout=60, check=True, cwd=REPO).stdout
    finally:
        tenant_dir.chmod(0o755)
    assert out.strip() == f"[] ['{tenant_dir}: cannot read it: Permission denied (unreadable)']"
