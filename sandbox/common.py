"""Small helpers shared by the provider emulators."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import falcon

Clock = Callable[[], float]


def default_clock() -> float:
    return time.time()


def iso(ts: float) -> str:
    """Nuki/Hospitable style timestamp: ISO 8601 UTC with milliseconds and a Z."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def send_json(resp: falcon.Response, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    resp.status = status
    resp.content_type = "application/json"
    resp.data = json.dumps(body).encode()
    for name, value in (headers or {}).items():
        resp.set_header(name, value)


def read_body(req: falcon.Request) -> tuple[bytes, Any]:
    """Raw body and its parsed form (JSON, form fields as a dict, or None)."""
    raw = req.bounded_stream.read() if req.content_length else b""
    if not raw:
        return raw, None
    ctype = (req.content_type or "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        return raw, dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True))
    try:
        return raw, json.loads(raw)
    except ValueError:
        return raw, _INVALID


class _Invalid:
    """Marker for a body that is not parseable."""


_INVALID = _Invalid()


def is_invalid(parsed: Any) -> bool:
    return isinstance(parsed, _Invalid)


def bearer_token(req: falcon.Request) -> str | None:
    auth = req.get_header("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def base_url(req: falcon.Request) -> str:
    """Scheme, host and the mount prefix, so links the sandbox builds point back at it."""
    return f"{req.scheme}://{req.netloc}{req.root_path or ''}"


class AdminResource:
    """A resource only the run's admin token may use (sandbox/app.py's guard): protection follows the
    routed resource, not the path's spelling, so `//_sandbox/state` or `/%2F_sandbox/state` gain nothing."""


def host_is_local(host_header: str, port: int | None) -> bool:
    """A Host header naming this machine (and `port`, when given)."""
    host, _, rest = host_header.rpartition(":") if not host_header.endswith("]") else (host_header, "", "")
    if not host or (rest and not rest.isdigit()):
        host, rest = host_header, ""
    if port is not None and rest != str(port):
        return False
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def path_is_normal(path: str, raw: str = "") -> bool:
    """No empty, '.' or '..' segment in the (percent-decoded) path: `//x`, `/%2Fx`, `/./x` are refused; nor an
    encoded '/' or '\\' in the ``raw`` request target as sent (`/a%2Fb`: decoded, one server routes it as `/a/b`,
    another not at all)."""
    target = raw.partition("?")[0].lower()
    if "%2f" in target or "%5c" in target:
        return False
    segments = path.split("/")[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]  # one trailing slash is harmless
    return path.startswith("/") and "\\" not in path and all(s not in ("", ".", "..") for s in segments)
