"""A real SMTP server for the sandbox (aiosmtpd): STARTTLS with its own certificate, LOGIN/PLAIN against the
seeded accounts, and every accepted mail captured in the world (`world.smtp.mailbox`).

In sandbox mode every tenant's `smtp.host:port` is replaced by this server: `start()` writes its port and
the PEM of its self-signed certificate into the state directory (`sandbox-smtp.port`, `sandbox-smtp.pem`),
where `tenantctl health --sandbox` finds them and trusts that certificate only. Auth is offered only
after STARTTLS, as on real submission servers (RFC 8314 §3: no credentials in clear text).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import errno
import ipaddress
import os
import socket
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from sandbox.world import World

PORT_FILE = "sandbox-smtp.port"
CA_FILE = "sandbox-smtp.pem"


@dataclasses.dataclass
class Mail:
    sender: str
    recipients: list[str]
    subject: str
    received_at: str  # ISO 8601 UTC


@dataclasses.dataclass
class SmtpState:
    accounts: dict[str, str] = dataclasses.field(default_factory=dict)  # username → password
    mailbox: list[Mail] = dataclasses.field(default_factory=list)

    def add_account(self, username: str, password: str) -> None:
        self.accounts[username] = password


def _certificate() -> tuple[bytes, bytes]:
    """A fresh self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenantctl sandbox SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, world: World) -> None:
        self.world = world

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        mail = Mail(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], str(msg.get("subject", "")),
                    dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        with self.world.lock:
            self.world.smtp.mailbox.append(mail)
        return "250 Message accepted for delivery"


def _controller_class() -> Any:
    """aiosmtpd's Controller with a Session whose legacy `login_data` is a plain attribute: aiosmtpd 1.4 sets
    it after every login and warns that it is deprecated, noise (or, under pytest, an error) for nothing."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Session

    class _Session(Session):
        login_data: Any = None

    class _Smtp(SMTP):
        def _create_session(self) -> Session:
            return _Session(self.loop)

    class _Controller(Controller):
        def factory(self) -> SMTP:
            return _Smtp(self.handler, **self.SMTP_kwargs)

    return _Controller


class SandboxSmtp:
    """The server; `start()` / `stop()`, or a context manager. One per world."""

    def __init__(self, world: World, state_dir: Path, host: str = "127.0.0.1") -> None:
        self.world, self.state_dir, self.host = world, state_dir, host
        self.port = 0
        self._controller: Any = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        with self.world.lock:
            expected = self.world.smtp.accounts.get(user)
        ok = expected is not None and auth_data.password.decode("utf-8", "replace") == expected
        return AuthResult(success=ok, handled=False)

    def start(self) -> SandboxSmtp:
        controller = _controller_class()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for name in (CA_FILE, PORT_FILE):  # before anything starts (written with O_NOFOLLOW after, in case)
            if (self.state_dir / name).is_symlink():
                raise OSError(errno.ELOOP, f"refusing {self.state_dir / name}: it is a symlink")
        cert_pem, key_pem = _certificate()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:  # ssl loads keys from files only
            cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert_file.write_bytes(cert_pem)
            key_file.write_bytes(key_pem)
            tls.load_cert_chain(cert_file, key_file)
        self.port = _free_port(self.host)
        self._controller = controller(_Handler(self.world), hostname=self.host, port=self.port,
                                      tls_context=tls, require_starttls=True, auth_require_tls=True,
                                      authenticator=self._authenticate, ready_timeout=10)
        self._controller.start()
        _write_own(self.state_dir / CA_FILE, cert_pem)
        _write_own(self.state_dir / PORT_FILE, f"{self.port}\n".encode())
        return self

    def stop(self) -> None:
        if self._controller is not None:
            (self.state_dir / PORT_FILE).unlink(missing_ok=True)
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SandboxSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_own(path: Path, data: bytes) -> None:
    """Write DATA as PATH, never through a symlink planted there (it would be written over the link's target):
    OSError naming PATH instead, and nothing written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"refusing {path}: it is a symlink") from None
        raise
    with os.fdopen(fd, "wb") as f:
        f.write(data)
