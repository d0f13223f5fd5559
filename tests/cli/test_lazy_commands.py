"""`tenantctl COMMAND` imports only the module of that command; help, completion and typos still see all."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer

from tenantctl import cli


def _top_level_names(t: typer.Typer) -> set[str]:
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in t.registered_commands}
    return names | {g.name or (g.typer_instance.info.name if g.typer_instance else "") or ""
                    for g in t.registered_groups}


@pytest.mark.parametrize("module", cli.MODULES)
def test_the_index_names_exactly_the_commands_each_module_registers(module: str) -> None:
    registered = typer.Typer()
    __import__(f"tenantctl.commands.{module}", fromlist=["register"]).register(registered)
    assert _top_level_names(registered) == {name for name, m in cli.COMMAND_MODULES.items() if m == module}


def test_every_command_of_the_full_app_is_indexed() -> None:
    assert _top_level_names(cli.app) == set(cli.COMMAND_MODULES)


@pytest.mark.parametrize(("argv", "module"), [
    (["plan", "--tenants", "x"], "reconcile"),
    (["--tenants", "x", "--debug", "-v", "webhooks", "log"], "webhooks"),
    (["--no-color", "import", "a.b"], "adopt"),
    (["provider-state", "list"], "provider_state"),
    (["--help"], None),
    ([], None),
    (["plna"], None),  # a typo: click's "No such command" needs every name for its suggestion
])
def test_the_command_is_found_after_the_root_options(argv: list[str], module: str | None) -> None:
    assert cli.invoked_module(argv) == module


def _commands_imported(*argv: str, env: dict[str, str] | None = None) -> set[str]:
    code = (f"import sys; sys.argv = ['tenantctl', {', '.join(repr(a) for a in argv)}]\n"
            "import tenantctl.cli\n"
            "print(' '.join(m for m in sys.modules if m.startswith('tenantctl.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return set(out.stdout.split())


def test_a_command_imports_its_own_module_only() -> None:
    assert _commands_imported("--tenants", "t", "validate") == {"tenantctl.commands.tenants"}
    assert _commands_imported("webhooks", "stats") == {"tenantctl.commands.webhooks"}


def test_root_help_and_completing_a_command_name_import_every_command() -> None:
    every = {f"tenantctl.commands.{m}" for m in cli.MODULES}
    assert _commands_imported("--help") == every
    bash = {**os.environ, "_TENANTCTL_COMPLETE": "complete_bash", "COMP_WORDS": "tenantctl --tenants t pl",
            "COMP_CWORD": "3"}
    assert _commands_imported(env=bash) == every


@pytest.mark.parametrize(("environ", "module"), [
    ({"COMP_WORDS": "tenantctl plan --format ", "COMP_CWORD": "3"}, "reconcile"),
    ({"COMP_WORDS": "tenantctl --tenants 'my tenants' access matrix a", "COMP_CWORD": "5"}, "access"),
    ({"COMP_WORDS": "tenantctl plan", "COMP_CWORD": "1"}, None),  # the name itself is being completed
    ({"COMP_WORDS": "tenantctl 'plan", "COMP_CWORD": "2"}, None),  # an open quote: every command
    ({"_TYPER_COMPLETE_ARGS": "tenantctl webhooks lo"}, "webhooks"),  # zsh, fish, PowerShell
    ({"_TYPER_COMPLETE_ARGS": "tenantctl webhooks"}, None),  # the last word may still be in progress
])
def test_a_tab_after_a_command_typed_in_full_needs_that_commands_module_only(environ: dict[str, str],
                                                                             module: str | None) -> None:
    assert cli.invoked_module([], {"_TENANTCTL_COMPLETE": "complete_bash", **environ}) == module


def test_a_mistyped_command_is_still_answered_with_a_suggestion() -> None:
    p = subprocess.run([sys.executable, "-m", "tenantctl", "plna"], capture_output=True, text=True, check=False)
    assert p.returncode == 1
    assert "No such command" in p.stderr and "plan" in p.stderr


def test_verbose_migrating_does_not_list_alembics_plugins_as_it_loads_them(tmp_path: object) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "TENANTCTL_STATE_DIR": f"{tmp_path}/state"}
    p = subprocess.run([sys.executable, "-m", "tenantctl", "-v", "db", "upgrade"], capture_output=True, text=True,
                       check=False, env=env)
    assert p.returncode == 0, p.stderr
    assert "setup plugin" not in p.stderr
