"""A delivery destination is checked where it is written and again before every request: a platform URL in
the settings (TENANTCTL_DELIVERY_URL_<PROVIDER>) meets the same rule as a tenant file's `delivery:` override
(tenancy/hosts.py `check_destination_url`), and no message quotes a URL's control characters raw."""

from __future__ import annotations

from pathlib import Path

import pytest

from outbound.policy import OutboundBlocked, OutboundPolicy, allow_list, check_url
from tests.conftest import RunCli

from .harness import SECRET

# What an attacker had `deliver` connect to, or fail on at every send: each refused before anything is sent.
NEVER_A_PLATFORM = [
    ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("https://0.0.0.0:19103/", "reaches this machine"),
    ("https://[::]:19103/", "the unspecified address"),
    ("https://[::ffff:127.0.0.1]:19103/", "an IPv4 address written inside an IPv6 address"),
    ("https://[::ffff:7f00:1]:19103/", "an IPv4 address written inside an IPv6 address"),
    ("https://0x7f000001:19103/", "four decimal numbers"),
    ("https://2130706433/", "four decimal numbers"),
    ("https://0177.0.0.1/", "four decimal numbers"),
    ("https://127.1/", "four decimal numbers"),
    ("https://224.0.0.1/", "a multicast address"),
    ("https://255.255.255.255/", "broadcast"),
    ("https://metadata.google.internal/computeMetadata/v1/", "a cloud metadata service"),
    ("http://evil\x1bc\x1b7.example/x", "printable ASCII"),
]


@pytest.mark.parametrize(("url", "reason"), NEVER_A_PLATFORM, ids=[repr(u) for u, _ in NEVER_A_PLATFORM])
def test_the_outbound_policy_refuses_a_destination_that_is_never_a_platform_even_when_allow_listed(
    url: str, reason: str,
) -> None:
    # The allow-list is built from the configured URLs: a setting puts its own host on it.
    policy = OutboundPolicy(allowed_hosts=allow_list([url]), allow_loopback_http=True)
    with pytest.raises(OutboundBlocked, match=reason) as refused:
        check_url(policy, url)
    assert str(refused.value).isprintable(), "the refusal must not carry a control character"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/platform", "http://[::1]:8000/platform",
                                 "http://localhost:8000/platform", "https://10.0.0.5/in",
                                 "https://192.168.1.50:8443/in", "https://platform.example.com/in?x=1"])
def test_the_outbound_policy_still_allows_loopback_private_and_public_destinations(url: str) -> None:
    check_url(OutboundPolicy(allowed_hosts=allow_list([url]), allow_loopback_http=True), url)


def _deliver(cli: RunCli, tmp_path: Path, url: str, *, allow_loopback_http: bool = True) -> tuple[int, str]:
    (tmp_path / "tenants").mkdir(exist_ok=True)  # no tenant file: the platform's destinations only
    r = cli("deliver", "--until-idle", env={
        "TENANTCTL_TENANTS": str(tmp_path / "tenants"), "TENANTCTL_DELIVERY_SECRETS": SECRET,
        "TENANTCTL_DELIVERY_URL_HOSPITABLE": url,
        "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": str(allow_loopback_http).lower(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"})
    return r.code, r.all


HINT = "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP=true allows plain http to a loopback host"


@pytest.mark.parametrize(("url", "allow", "hinted"), [
    ("http://127.0.0.1:19103/in", False, True),  # the one refusal the setting lifts
    ("http://platform.example.com/in", False, False),  # not loopback: the setting would not help
    ("http://u:p@127.0.0.1:19103/in", True, False),  # already set; credentials are refused whatever it says
    ("https://169.254.169.254/latest/meta-data/", True, False),
])
def test_a_refusal_suggests_the_loopback_http_setting_only_where_it_would_help(
    cli: RunCli, tmp_path: Path, url: str, allow: bool, hinted: bool,
) -> None:
    code, out = _deliver(cli, tmp_path, url, allow_loopback_http=allow)
    assert code == 1 and "delivery URL refused: " in out, out
    assert (HINT in out) is hinted, out


def test_deliver_refuses_a_tenants_directory_that_does_not_exist(cli: RunCli, tmp_path: Path) -> None:
    """Without the tenant files every tenant's own destination (`delivery:`) would be dropped, and its events sent
    to the platform-wide URL instead; `serve` refuses the same directory."""
    r = cli("deliver", "--until-idle", env={
        "TENANTCTL_TENANTS": str(tmp_path / "tenants-typo"), "TENANTCTL_DELIVERY_SECRETS": SECRET,
        "TENANTCTL_DELIVERY_URL_HOSPITABLE": "https://platform.example.com/in",
        "DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"})
    assert r.code == 1, r.all
    assert f"the tenants directory {tmp_path / 'tenants-typo'} does not exist" in r.err
    assert "each tenant's own destinations" in r.err


@pytest.mark.parametrize(("url", "reason"), [
    ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("https://[::ffff:127.0.0.1]:19103/", "an IPv4 address written inside an IPv6 address"),
    ("https://2130706433/", "four decimal numbers"),
])
def test_deliver_refuses_to_start_on_a_platform_setting_that_is_never_a_platform(
    cli: RunCli, tmp_path: Path, url: str, reason: str,
) -> None:
    code, out = _deliver(cli, tmp_path, url)
    assert code == 1, out
    assert "TENANTCTL_DELIVERY_URL_HOSPITABLE: delivery URL refused: " in out and reason in out, out


def test_a_refused_setting_with_control_characters_is_reported_escaped(cli: RunCli, tmp_path: Path) -> None:
    code, out = _deliver(cli, tmp_path, "http://evil\x08\x08\x08\x08\x08ok\x1bc.example/x")
    assert code == 1, out
    assert "TENANTCTL_DELIVERY_URL_HOSPITABLE: delivery URL refused: " in out and "printable ASCII" in out, out
    assert not any(ch in out for ch in "\x1b\x08"), "a control character reached the terminal"


@pytest.mark.parametrize(("url", "reason"), [
    ("https://platform.example.com:99999/x", "the port must be a number from 1 to 65535"),
    ("https://platform.example.com:+443/x", "the port must be a number from 1 to 65535"),
    ("https://[::1/x", "an IPv6 address in brackets is missing its closing ]"),
])
def test_a_platform_url_python_cannot_split_is_refused_with_the_rule_not_a_value_error(
    cli: RunCli, tmp_path: Path, url: str, reason: str,
) -> None:
    """urlsplit raised ValueError while the allow-list was built, before the rule ran: `error: ValueError: Port out
    of range 0-65535`, the setting unnamed."""
    code, out = _deliver(cli, tmp_path, url)
    assert code == 1, out
    assert f"TENANTCTL_DELIVERY_URL_HOSPITABLE: delivery URL refused: its host is refused: {reason}" in out, out
    assert "ValueError" not in out
