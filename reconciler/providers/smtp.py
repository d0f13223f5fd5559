"""SMTP: health only. The tenant's mail server answers, offers STARTTLS when the file asks for it, and
accepts the login. Nothing is observed, planned or written.

Steps: connect to `smtp.host:port` (10 s timeout), EHLO, STARTTLS with the system's default TLS context
when `starttls` (a server that does not offer it fails here, before any credential is sent), EHLO again,
LOGIN, QUIT. Port 465 is implicit TLS (SMTPS) and needs no STARTTLS. Each failure is a failed
HealthCheck whose message names the step and the server's reply code, never the password (the server's
own text is scrubbed of it as well).

The connection does not go through the `Http` client (SMTP is not HTTP): its safety rests on the tenant
model instead. `smtp.host` is a `Hostname` (letters, digits, dots, hyphens) and `smtp.port` is range
checked (1-65535); an admin could point them at an internal address, the SSRF consideration, but both
come from the reviewed tenant file in git, and the check only talks SMTP and reports a reply code. The
connect function is a constructor argument so tests can point it at a loopback server.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage

from reconciler.health_status import Health
from reconciler.providers.base import HealthCheck, HealthOnly, Http, ProviderContext, check
from tenancy.model import Tenant

NAME = "smtp"
TIMEOUT_S = 10.0
SMTPS_PORT = 465
_MASK = "(sensitive)"

# (host, port, timeout) → a connected client that has read the server's greeting.
Connect = Callable[[str, int, float], smtplib.SMTP]


def default_connect(host: str, port: int, timeout: float) -> smtplib.SMTP:
    if port == SMTPS_PORT:
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    return smtplib.SMTP(host, port, timeout=timeout)


class _Failed(Exception):
    """One step failed; the message is already safe to show."""


class SmtpProvider(HealthOnly):
    reason = "is checked, never changed"
    name = NAME

    def __init__(self, connect: Connect = default_connect, timeout_s: float = TIMEOUT_S) -> None:
        self._connect = connect
        self.timeout_s = timeout_s

    def applies_to(self, tenant: Tenant) -> bool:
        return tenant.smtp is not None

    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        cfg = tenant.smtp
        if cfg is None:
            return []
        host, port, cafile = ctx.smtp_endpoint or (cfg.host, cfg.port, None)
        slug, where = tenant.slug, f"{host}:{port}"
        password = cfg.password.get_secret_value()
        checks: list[HealthCheck] = []
        tls = ssl.create_default_context(cafile=cafile)  # the sandbox's own CA, else the system's

        def safe(text: str) -> str:
            return text.replace(password, _MASK) if password else text

        def row(step: str) -> str:
            return f"{NAME}.{step}[{slug}]"

        def ok(step: str, detail: str) -> None:
            checks.append(HealthCheck(NAME, slug, row(step), True, detail, Health.HEALTHY))

        def failed(step: str, detail: str, hint: str, status: Health = Health.DEGRADED) -> HealthCheck:
            return check(NAME, slug, row(step), status, safe(detail), hint)

        step = "connect"
        try:
            client = self._connect(host, port, self.timeout_s)
        except (OSError, smtplib.SMTPException) as e:
            return [failed(step, f"cannot connect to {where}: {_describe(e)}",
                           "the mail server could not be reached: check smtp.host and smtp.port, and that the "
                           "server accepts connections from here", Health.UNKNOWN)]
        try:
            ok(step, f"{where} answers")
            step = "ehlo"
            _expect(client.ehlo(), "EHLO")
            if cfg.starttls and cfg.port != SMTPS_PORT:
                step = "starttls"
                if not client.has_extn("starttls"):
                    raise _Failed(f"{where} does not offer STARTTLS (the file asks for it): nothing was sent; "
                                  "check the port (587 usually offers it) or the server")
                _expect(client.starttls(context=tls), "STARTTLS", code=220)
                _expect(client.ehlo(), "EHLO after STARTTLS")
                ok(step, "TLS established, the certificate verified")
            step = "login"
            client.login(cfg.username, password)
            secured = cfg.starttls or cfg.port == SMTPS_PORT
            ok(step, f"{cfg.username} logged in" + ("" if secured else
                                                    " (warning: without TLS, as starttls: false asks)"))
        except _Failed as e:
            checks.append(failed(step, str(e), "check the port (587 usually offers STARTTLS) or the server"))
        except smtplib.SMTPAuthenticationError as e:
            checks.append(failed(step, f"{where} refused the login of {cfg.username} (reply {e.smtp_code})",
                                 "check smtp.username and smtp.password in the tenant file (an app password "
                                 "if the provider asks for one)"))
        except (OSError, smtplib.SMTPException, ValueError) as e:
            checks.append(failed(step, f"{step} failed at {where}: {_describe(e)}",
                                 "check the server's TLS certificate and settings, then run health again"))
        finally:
            _quit(client)
        return checks


    def round_trip(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        """`--active`: send a test mail from `smtp.from_address` to `ctx.mail_to` (else to that same address)
        over STARTTLS after login. Row `smtp.test_mail[slug]` with the time the server took to accept it.
        Nothing to clean up: the mail is the evidence (the sandbox's server captures it)."""
        cfg = tenant.smtp
        if cfg is None:
            return []
        host, port, cafile = ctx.smtp_endpoint or (cfg.host, cfg.port, None)
        password = cfg.password.get_secret_value()
        to = ctx.mail_to or str(cfg.from_address)
        address = f"{NAME}.test_mail[{tenant.slug}]"
        msg = EmailMessage()
        msg["From"], msg["To"] = str(cfg.from_address), to
        msg["Subject"] = f"tenantctl health: test mail for {tenant.slug}"
        msg.set_content("Sent by `tenantctl health --active` to prove this tenant's mail server sends mail. "
                        "Nothing to do.")
        started = time.monotonic()
        try:
            client = self._connect(host, port, self.timeout_s)
            try:
                if cfg.starttls and cfg.port != SMTPS_PORT:
                    client.starttls(context=ssl.create_default_context(cafile=cafile))
                client.login(cfg.username, password)
                client.send_message(msg)
            finally:
                _quit(client)
        except (OSError, smtplib.SMTPException, ValueError) as e:
            text = f"the test mail to {to} was not sent: {_describe(e)}".replace(password, _MASK) if password \
                else f"the test mail to {to} was not sent: {_describe(e)}"
            return [check(NAME, tenant.slug, address, Health.DEGRADED, text,
                          "run `tenantctl health -p smtp` for the failing step (connect, STARTTLS, login)",
                          duration_s=time.monotonic() - started)]
        took = time.monotonic() - started
        return [check(NAME, tenant.slug, address, Health.HEALTHY, f"sent to {to}, accepted in {took:.2f} s",
                      duration_s=took)]


def _expect(reply: tuple[int, bytes], what: str, *, code: int = 250) -> None:
    if reply[0] != code:
        raise _Failed(f"{what} answered {reply[0]}, expected {code}")


def _describe(e: BaseException) -> str:
    if isinstance(e, smtplib.SMTPResponseException):
        text = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        return f"reply {e.smtp_code} {text}".strip()
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()
