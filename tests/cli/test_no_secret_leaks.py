"""No secret value of any tenant ever reaches the output: not in results, errors, or --debug tracebacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import typer

from tenancy.loader import load_tenants
from tenancy.redact import secret_values
from tests.conftest import DEMO_KEY, EXAMPLES, RunCli


@pytest.fixture
def example_secrets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(DEMO_KEY))
    values = [s.get_secret_value() for lt in load_tenants([EXAMPLES]).tenants for s in secret_values(lt.tenant)]
    assert len(values) > 20
    return values


COMMANDS = [
    ["validate"],
    ["validate", "--format", "json"],
    ["list"],
    ["show", "acme"],
    ["show", "acme", "--format", "json"],
    ["show", "blue-harbor"],
    # An unreachable provider: the error path, with a traceback.
    ["plan", "--sandbox", "--format", "json"],
    ["health", "--sandbox"],
    ["apply", "--sandbox", "--auto-approve"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_no_secret_in_any_output_even_with_debug(cli: RunCli, example_secrets: list[str], tmp_path: Path,
                                                 args: list[str]) -> None:
    tenants = tmp_path / "tenants"
    shutil.copytree(EXAMPLES, tenants)  # apply may write back; never into the repository
    r = cli("--debug", "--tenants", str(tenants), *args,
            env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_SANDBOX_URL": "http://127.0.0.1:9"})
    assert r.out or r.err
    for value in example_secrets:
        assert value not in r.all, f"a secret leaked into `{' '.join(args)}`"


def test_an_unexpected_error_with_debug_prints_a_scrubbed_traceback(
        example_secrets: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The last line of defence in `tenantctl`'s main(): any exception text is scrubbed by value."""
    from tenancy.redact import REDACTOR
    from tenantctl import cli

    secret = example_secrets[0]
    REDACTOR.add(secret)

    def boom(ctx: typer.Context) -> None:
        raise RuntimeError(f"provider said: bad token {secret}")

    cli.app.command("boom")(boom)
    monkeypatch.setattr("sys.argv", ["tenantctl", "--debug", "--tenants", str(EXAMPLES), "boom"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert "Traceback (most recent call last)" in err and "RuntimeError: provider said: bad token" in err
    assert secret not in err and "(sensitive)" in err
