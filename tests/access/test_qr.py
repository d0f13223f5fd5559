"""`tenantctl access qr`: the image decodes back to the teammate's code and never lands in the repository."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import zxingcpp
from PIL import Image

from tenancy.loader import load_tenants
from tests.conftest import REPO, RunCli


def _repo_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout


def _maria_qr(d: Path) -> str:
    t = load_tenants([d / "acme.yaml"]).tenants[0].tenant
    code = t.teammates[0].access.intercom_qr  # type: ignore[union-attr]
    assert code is not None
    return code.get_secret_value()


def test_a_png_and_an_svg_carry_the_code_and_the_caption(cli: RunCli, examples_copy: Path, tmp_path: Path) -> None:
    before = _repo_status()
    assert cli("--tenants", str(examples_copy), "access", "rotate", "acme", "maria", "--qr").code == 0
    code = _maria_qr(examples_copy)
    assert len(code) >= 10
    png, svg = tmp_path / "out" / "maria.png", tmp_path / "out" / "maria.svg"
    png.parent.mkdir()
    for out in (png, svg):
        r = cli("--tenants", str(examples_copy), "access", "qr", "acme", "maria", "--out", str(out))
        assert r.code == 0, r.all
        assert code not in r.all
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    [found] = zxingcpp.read_barcodes(Image.open(png))
    assert found.format == zxingcpp.BarcodeFormat.QRCode and found.text == code
    text = svg.read_text()
    assert "Maria Lopez" in text and "Old Town Loft 2" in text and text.startswith("<svg")
    assert _repo_status() == before


def test_a_path_inside_the_repository_is_refused_and_nothing_is_written(cli: RunCli, examples_copy: Path) -> None:
    assert cli("--tenants", str(examples_copy), "access", "rotate", "acme", "maria", "--qr").code == 0
    before = _repo_status()
    for out in (REPO / "maria.png", REPO / "examples" / "maria.svg"):
        r = cli("--tenants", str(examples_copy), "access", "qr", "acme", "maria", "--out", str(out))
        assert r.code == 1 and "inside the repository" in r.err, r.all
        assert not out.exists()
    r = cli("--tenants", str(examples_copy), "access", "qr", "acme", "maria", "--out", "maria.png", cwd=REPO)
    assert r.code == 1 and "inside the repository" in r.err
    assert _repo_status() == before


def test_a_teammate_without_a_qr_code_is_told_how_to_get_one(cli: RunCli, examples_copy: Path,
                                                             tmp_path: Path) -> None:
    r = cli("--tenants", str(examples_copy), "access", "qr", "acme", "maria", "--out", str(tmp_path / "m.png"))
    assert r.code == 1 and "access rotate acme maria --qr" in r.err
    assert not (tmp_path / "m.png").exists()


def test_a_path_inside_any_other_git_work_tree_is_refused(cli: RunCli, examples_copy: Path, tmp_path: Path) -> None:
    assert cli("--tenants", str(examples_copy), "access", "rotate", "acme", "maria", "--qr").code == 0
    other = tmp_path / "someone-elses-repo"
    (other / "deep" / "er").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    for out in (other / "maria.png", other / "deep" / "er" / "maria.svg"):
        r = cli("--tenants", str(examples_copy), "access", "qr", "acme", "maria", "--out", str(out))
        assert r.code == 1 and f"git work tree) {other}" in r.err, r.all
        assert not out.exists()
