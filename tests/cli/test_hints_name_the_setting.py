"""When something the CLI talks to is not there, the error names the URL it tried and the setting to change."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import DEMO_KEY, EXAMPLES, RunCli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on exit: nothing listens there


@pytest.mark.parametrize("command", [["plan", "--sandbox"], ["health", "--sandbox"]], ids=" ".join)
def test_an_unreachable_sandbox_names_its_url_and_tenantctl_sandbox_url(cli: RunCli, command: list[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    r = cli("--tenants", str(EXAMPLES), *command, "-t", "acme",
            env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_SANDBOX_URL": url, "TENANTCTL_SANDBOX_INPROCESS": ""})
    assert r.code == 1, r.all
    assert f"cannot reach the sandbox at {url}" in r.err
    assert "TENANTCTL_SANDBOX_URL" in r.err and "sandbox serve" in r.err


def test_simulate_booking_names_the_url_it_tried_and_the_server_option(cli: RunCli) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    r = cli("--tenants", str(EXAMPLES), "simulate", "booking", "acme", "--server", url, "--timeout", "2",
            env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY)})
    assert r.code == 1, r.all
    assert f"cannot reach the server at {url}" in r.out and "--server" in r.out


def test_simulate_booking_names_only_what_a_skipped_whatsapp_message_lacks(cli: RunCli) -> None:
    """casa-sol is still onboarding (no phone_number_id): the skip names that, not the app secret it has."""
    url = f"http://127.0.0.1:{_closed_port()}"
    r = cli("--tenants", str(EXAMPLES), "simulate", "booking", "casa-sol", "--server", url, "--timeout", "2",
            env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_META_APP_SECRETS": "an-app-secret"})
    assert "whatsapp: skipped (no whatsapp.phone_number_id in the tenant file)" in " ".join(r.out.split()), r.all
