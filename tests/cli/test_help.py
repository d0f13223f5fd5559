"""Help that teaches: every command's --help lists its options' choices and environment variables and
ends with real examples; shell completion installs and completes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from tenantctl.argv import join_bash_assignments
from tenantctl.cli import app
from tenantctl.help_text import EXAMPLES
from tests.conftest import RunCli

ROOT = typer.main.get_command(app)


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every (sub)command of the click tree typer builds (typer vendors click: duck-typed)."""
    found = [(path, cmd)]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        found += _walk(sub, (*path, name))
    return found


COMMANDS = _walk(ROOT)
# Options backed by a setting or read from the environment: their variable must be declared and shown.
SETTING_OPTIONS = {"--tenants": "TENANTCTL_TENANTS", "--sandbox": "TENANTCTL_SANDBOX",
                   "--debug": "TENANTCTL_DEBUG", "--quiet": "TENANTCTL_QUIET"}
SERVE_OPTIONS = {"--bind": "TENANTCTL_BIND", "--workers": "TENANTCTL_WORKERS", "--threads": "TENANTCTL_THREADS",
                 "--worker-class": "TENANTCTL_WORKER_CLASS"}


def test_the_walk_finds_every_command() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "plan", "apply", "health", "state list", "state show", "adopt", "import", "db upgrade",
            "sandbox seed", "webhooks log", "lock release"} <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_help_lists_choices_and_environment_variables_and_ends_with_examples(
        cli: RunCli, path: tuple[str, ...], command: Any) -> None:
    r = cli(*path, "--help", env={"COLUMNS": "250"})
    assert r.code == 0, r.all
    text = r.out
    flat = " ".join(text.split())  # help wraps at the terminal's width
    assert "<bool>" not in text  # flags take no value
    for param in command.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        choices = param.type_descriptor.choices
        if choices:
            shown = [str(getattr(c, "value", c)) for c in choices]
            assert f"<{'|'.join(shown)}>" in text, (long, text)
        wanted = {**SETTING_OPTIONS, **(SERVE_OPTIONS if path == ("serve",) else {})}
        if long in wanted:
            assert param.envvar == wanted[long], long
        if param.envvar and param.show_envvar:
            assert f"[env var: {param.envvar}" in flat, (long, text)
    examples = EXAMPLES.get(" ".join(path), ())
    assert len(examples) >= 2, f"`tenantctl {' '.join(path)}` has no examples in tenantctl/help_text.py"
    tail = text.rstrip().splitlines()[-len(examples):]
    assert [line.strip() for line in tail] == [f"$ {e}" for e in examples]
    assert all(e.startswith(("tenantctl ", "DATABASE_URL=")) for e in examples)


def test_flags_show_no_value_type_and_format_shows_its_choices(cli: RunCli) -> None:
    text = " ".join(cli("plan", "--help", env={"COLUMNS": "250"}).out.split())
    assert re.search(r"--sandbox\s+Use the local sandbox\.\s+\[env var: TENANTCTL_SANDBOX\]", text)
    assert "--format <text|json|markdown>" in text
    assert "hospitable, whatsapp, nuki, beds24, twon, smtp" in text  # the providers to choose from
    bad = cli("plan", "--format", "yaml")
    assert bad.code == 1 and "'yaml' is not one of 'text', 'json', 'markdown'" in bad.err


def test_shell_completion_installs_and_completes(cli: RunCli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    r = cli("--install-completion", "bash", env={"HOME": str(home), "SHELL": "/bin/bash"})
    assert r.code == 0, r.all
    script = home / ".bash_completions" / "tenantctl.sh"
    assert "_TENANTCTL_COMPLETE" in script.read_text()
    assert str(script) in (home / ".bashrc").read_text()
    words = cli(env={"_TENANTCTL_COMPLETE": "complete_bash", "COMP_WORDS": "tenantctl plan --format ",
                     "COMP_CWORD": "3"})
    assert words.out.split() == ["text", "json", "markdown"]
    cmds = cli(env={"_TENANTCTL_COMPLETE": "complete_bash", "COMP_WORDS": "tenantctl sta", "COMP_CWORD": "1"})
    assert cmds.out.split() == ["state"]


def test_tab_completes_tenant_slugs_from_the_tenant_files_names(cli: RunCli, tmp_path: Path) -> None:
    """`-t` and every slug argument complete from the file names of `--tenants` (or TENANTCTL_TENANTS): nothing
    is decrypted, so completion needs no key. A name that is no slug (an escape sequence the shell would print,
    a space it would split on) is not offered; a directory that does not exist completes nothing, quietly."""
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    for name in ("acme.yaml", "casa-sol.yaml", "casa-mar.yaml", ".sops.yaml", "notes.txt", "casa-\x1b[2J.yaml",
                 "casa sol.yaml", "Casa-Sol.yaml"):
        (tenants / name).write_text("not read\n")

    def complete(words: str, **env: str) -> list[str]:
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
        r = cli(env={"_TENANTCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword),
                     "SOPS_AGE_KEY_FILE": str(tmp_path / "no-key"), **env})
        assert r.code == 0 and not r.err, r.all
        return r.out.split()

    assert complete("tenantctl show ", TENANTCTL_TENANTS=str(tenants)) == ["acme", "casa-mar", "casa-sol"]
    assert complete(f"tenantctl --tenants {tenants} plan -t casa-") == ["casa-mar", "casa-sol"]
    assert complete(f"tenantctl --tenants {tenants} lock release a") == ["acme"]
    assert complete("tenantctl access matrix ", TENANTCTL_TENANTS=str(tmp_path / "none")) == []
    assert complete("tenantctl --tenants ~/tenants show a", HOME=str(tmp_path)) == ["acme"]  # as the shell would
    assert complete("tenantctl show ", TENANTCTL_DELIVERY_MAX_ATTEMPTS="abc") == []  # no error mid-line
    # `--tenants=DIR`: bash splits the words at "=" (COMP_WORDBREAKS), so COMP_WORDS holds "--tenants = DIR".
    assert complete(f"tenantctl --tenants = {tenants} show casa-") == ["casa-mar", "casa-sol"]
    assert complete(f"tenantctl --tenants = {tenants} sh") == ["show"]


def test_bash_words_split_at_an_equals_sign_are_joined_back() -> None:
    assert join_bash_assignments(["tenantctl", "--tenants", "=", "d", "show", ""], 5) == (
        ["tenantctl", "--tenants=d", "show", ""], 3)
    # The cursor on the value: it is completed as the option's value, and bash replaces the value only.
    assert join_bash_assignments(["tenantctl", "--tenants", "=", "/tm"], 3) == (["tenantctl", "--tenants", "/tm"], 2)
    # Left alone: the cursor on the "=" itself, and an "=" that follows no option.
    assert join_bash_assignments(["tenantctl", "--tenants", "="], 2) == (["tenantctl", "--tenants", "="], 2)
    assert join_bash_assignments(["tenantctl", "show", "=", "x"], 3) == (["tenantctl", "show", "=", "x"], 3)
