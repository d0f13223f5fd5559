"""A symlink planted in a state dir, for the tests that a start refuses it and leaves its target alone."""

from __future__ import annotations

from pathlib import Path

PRECIOUS = "precious\n"


def planted_link(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A new state dir under TMP_PATH whose NAME links to a 0644 file `victim` in a directory of its own:
    (the state dir, the victim)."""
    state, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    state.mkdir()
    elsewhere.mkdir()
    victim = elsewhere / "victim"
    victim.write_text(PRECIOUS)
    victim.chmod(0o644)
    (state / name).symlink_to(victim)
    return state, victim


def untouched(victim: Path) -> bool:
    """The victim as planted, and nothing created beside it (no lock file)."""
    return (victim.read_text() == PRECIOUS and victim.stat().st_mode & 0o777 == 0o644
            and sorted(p.name for p in victim.parent.iterdir()) == ["victim"])
