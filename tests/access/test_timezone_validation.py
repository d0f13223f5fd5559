"""A window needs a time zone: validate names the file, line and field, and says what to add."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import RunCli


def _line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


def test_the_examples_declare_their_zone_and_pass(cli: RunCli, examples_copy: Path) -> None:
    r = cli("--tenants", str(examples_copy), "validate")
    assert r.code == 0, r.all


def test_a_window_without_a_zone_is_an_error_at_the_teammates_access(cli: RunCli, examples_copy: Path) -> None:
    path = examples_copy / "acme.yaml"
    path.write_text(path.read_text().replace("timezone: Europe/Bratislava\n", ""))
    before = path.read_bytes()
    r = cli("--tenants", str(examples_copy), "validate")
    assert r.code == 1, r.all
    line = _line_of(path, "access:")  # maria's access: weekdays and hours
    finding = next(ln for ln in r.out.splitlines() if ln.startswith(f"{path}:{line}:"))
    assert ": teammates[0].access: " in finding and "no time zone" in finding
    assert "timezone: Europe/Bratislava" in r.out
    assert path.read_bytes() == before


def test_an_unknown_zone_name_is_refused_on_its_line(cli: RunCli, examples_copy: Path) -> None:
    path = examples_copy / "blue-harbor.yaml"
    path.write_text(path.read_text().replace("timezone: Europe/Bratislava", "timezone: Europe/Bratslava"))
    r = cli("--tenants", str(examples_copy), "validate")
    assert r.code == 1, r.all
    line = _line_of(path, "timezone:")
    assert any(ln.startswith(f"{path}:{line}:") and "timezone" in ln and "Europe/Bratslava" in ln
               for ln in r.out.splitlines()), r.out


def test_a_property_zone_is_enough_for_windows_there(cli: RunCli, examples_copy: Path) -> None:
    path = examples_copy / "blue-harbor.yaml"
    text = path.read_text().replace("timezone: Europe/Bratislava\n", "")
    path.write_text(text.replace("      beds24_property_id: 204411\n",
                                 "      beds24_property_id: 204411\n      timezone: Europe/Lisbon\n"))
    r = cli("--tenants", str(examples_copy), "validate")
    assert r.code == 0, r.all
