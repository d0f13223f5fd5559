"""The one outbound HTTP client every provider uses (implements `providers.base.Http`).

Guarantees, in the order a request meets them:
1. Only allow-listed hosts (the provider APIs, the 2N devices named in tenant files; in sandbox mode
   only the sandbox), and only https outside the sandbox: `OutboundBlocked`.
2. Credentials travel in headers: a URL whose query holds a known secret (the request's `secrets=` or any
   value the redactor knows) is refused before it is sent.
3. Per-provider concurrency (a semaphore) and rate (a token bucket), a timeout on every call, and per
   attempt a total deadline and a cap on the answer's size (a 1 byte/s or a 200 MB answer is an error:
   `PermanentError` for too large, a lost answer for too slow, never retried).
   Each provider reaches only its own hosts (`ReconcileConfig.may_reach`); a tenant's 2N intercom host
   only for that tenant's `twon` calls. For device providers, the name is resolved here and every address
   it resolves to must pass `tenancy.hosts.check_device_address` (no loopback, link-local or metadata
   address); the request is then pinned to the checked address (Host header and TLS SNI keep the name), so
   a DNS answer that changes between check and connect cannot redirect it.
4. Redirects are never followed (a redirect would carry the Authorization header elsewhere): an error.
5. Failures map to `reconciler.errors` by status, or by the provider's own `classify(response)` hook
   (Meta's Graph error codes are built in); temporary ones are retried as `retry.decide` says.
6. Every message and log line is scrubbed of the request's secrets and every known tenant secret.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from outbound.retry_after import parse_retry_after
from reconciler.config import (
    DEVICE_PROVIDERS,
    IDEMPOTENT_WRITE_PROVIDERS,
    ProviderLimit,
    ReconcileConfig,
    host_of,
)
from reconciler.errors import (
    AnswerLost,
    AuthError,
    InvalidRequest,
    NotFound,
    OutboundBlocked,
    PermanentError,
    PermissionDenied,
    ProviderError,
    TemporaryError,
)
from reconciler.progress import NO_PROGRESS, Progress
from reconciler.retry import Failure, classify_status, decide
from tenancy.hosts import check_device_address
from tenancy.redact import MASK, REDACTOR

log = logging.getLogger("reconciler.http")

Classifier = Callable[[httpx.Response], ProviderError | None]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAYBE_APPLIED = frozenset({Failure.LOST, Failure.SERVER_ERROR, Failure.DEADLINE})
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass
REQUEST_ID_HEADERS = ("x-fb-trace-id", "x-hospitable-trace", "x-request-id", "x-amzn-requestid")
# Graph API codes (PROVIDERS.md): decide on the code, not on the HTTP status.
META_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
META_TRANSIENT_CODES = frozenset({1, 2})


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. `take()` blocks until a token is free."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate, self.burst = rate, max(1, burst)
        self._tokens = float(self.burst)
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token; returns how long it waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0  # reserve now, so waiters queue up in order
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait


class _Gate:
    def __init__(self, limit: ProviderLimit) -> None:
        self.sem = threading.BoundedSemaphore(max(1, limit.concurrency))
        self.bucket = TokenBucket(limit.rate, limit.burst) if limit.rate else None


class HttpClient:
    """Thread-safe; share one per run. `transport` is injected by tests and the in-process sandbox."""

    def __init__(
        self,
        config: ReconcileConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        classifiers: Mapping[str, Classifier] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        resolver: Resolver = resolve,
    ) -> None:
        self.config = config
        limits = config.limits
        self._resolve = resolver
        cap = limits.total_deadline_s  # no single wait may outlast the whole call's deadline
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # no proxies or .netrc credentials from the environment
            timeout=httpx.Timeout(min(limits.read_timeout_s, cap), connect=min(limits.connect_timeout_s, cap),
                                  pool=cap),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._classifiers = dict(classifiers or {})
        self._classifiers.setdefault("whatsapp", graph_error)
        self._gates: dict[str, _Gate] = {}
        self._gates_lock = threading.Lock()
        self._sleep, self._jitter, self._now = sleep, jitter, now
        self._stats_lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # attempts sent, by provider
        self.retries: Counter[str] = Counter()
        self.progress: Progress = NO_PROGRESS  # the CLI's live display: calls and retry waits as they happen

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _gate(self, provider: str) -> _Gate:
        with self._gates_lock:
            gate = self._gates.get(provider)
            if gate is None:
                gate = self._gates[provider] = _Gate(self.config.limits.for_provider(provider))
            return gate

    def request(
        self,
        provider: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        secrets: Sequence[str] = (),
        tenant: str | None = None,
    ) -> httpx.Response:
        """`tenant`: the tenant on whose own device the call is (2N): its hosts are allowed for it alone."""
        method = method.upper()
        scrub = _scrubber(secrets)
        request = self._client.build_request(method, url, headers=headers, params=params,  # type: ignore[arg-type]
                                             json=json, data=data)
        self._check(provider, request, secrets, scrub, tenant)
        self._pin(provider, request)
        idempotent = method in IDEMPOTENT_METHODS or provider in IDEMPOTENT_WRITE_PROVIDERS
        where = scrub(f"{method} {request.url.copy_with(query=None)}")
        gate = self._gate(provider)
        attempt = 0
        maybe_applied = False  # some attempt may have reached the provider and acted
        while True:
            attempt += 1
            outcome = self._attempt(provider, request, auth, gate, where=where, scrub=scrub)
            if isinstance(outcome, httpx.Response):
                return outcome
            error, kind = outcome
            maybe_applied = maybe_applied or kind in MAYBE_APPLIED
            delay = decide(kind, attempt=attempt, idempotent=idempotent, retry_after=error.retry_after,
                           policy=self.config.limits.retry, jitter=self._jitter(),
                           read=method in READ_METHODS)
            if delay is None:
                log.info("%s failed for good after %d attempt(s): %s", where, attempt, error)
                if maybe_applied and method not in READ_METHODS:
                    # An attempt of this write reached the provider and its answer was lost (or was a
                    # 5xx): it may have happened, whatever the last attempt said (a 429 after a lost
                    # DELETE, say). Say so, so the engine reads back instead of calling it failed.
                    raise AnswerLost(provider, error.message, status=error.status, code=error.code,
                                     request_id=error.request_id) from error
                raise error
            with self._stats_lock:
                self.retries[provider] += 1
            log.info("%s: %s; retry %d in %.2fs", where, error, attempt, delay)
            self.progress.wait(provider, str(error.status or kind.value.replace("_", " ")), delay)
            self._sleep(delay)

    def _attempt(self, provider: str, request: httpx.Request, auth: httpx.Auth | None, gate: _Gate, *,
                 where: str, scrub: Callable[[str], str]) -> httpx.Response | tuple[ProviderError, Failure]:
        """One try: the response on success, else the error and what kind of failure it was."""
        with gate.sem:
            if gate.bucket is not None:
                gate.bucket.take()
            with self._stats_lock:
                self.calls[provider] += 1
            self.progress.call(provider, where)
            started = time.monotonic()
            try:
                response = self._send(request, auth, started + self.config.limits.total_deadline_s)
            except _TooLarge:
                return PermanentError(provider, scrub(f"{where}: the answer is larger than "
                                                      f"{self.config.limits.max_response_bytes} bytes; "
                                                      "not read")), Failure.PERMANENT
            except _TooSlow:
                return TemporaryError(provider, scrub(f"{where}: no whole answer within "
                                                      f"{self.config.limits.total_deadline_s:g} s")), \
                    Failure.DEADLINE
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                return TemporaryError(provider, scrub(f"{where}: cannot connect ({type(e).__name__})")), \
                    Failure.CONNECT
            except httpx.HTTPError as e:
                lost = scrub(f"{where}: no answer ({type(e).__name__})")
                return TemporaryError(provider, lost), Failure.LOST
        log.debug("%s → %d in %.0f ms", where, response.status_code, (time.monotonic() - started) * 1000)
        if response.is_redirect:
            target = host_of(response.headers.get("location", "")) or "(unknown)"
            return PermanentError(provider, scrub(f"{where}: redirected to {target}; not followed, "
                                                  "credentials must not travel"),
                                  status=response.status_code, request_id=_request_id(response)), \
                Failure.PERMANENT
        if response.status_code < 400:
            return response
        error = self._classify(provider, response, where, scrub)
        if isinstance(error, TemporaryError):
            rate_limited = response.status_code == 429 or error.code in META_RATE_LIMIT_CODES
            failure = Failure.RATE_LIMITED if rate_limited else (
                classify_status(response.status_code) or Failure.SERVER_ERROR)
            if failure is Failure.PERMANENT:  # a 4xx the provider calls temporary
                failure = Failure.SERVER_ERROR
            return error, failure
        return error, Failure.PERMANENT

    def _send(self, request: httpx.Request, auth: httpx.Auth | None, deadline: float) -> httpx.Response:
        """Send, and read the answer whole within `deadline` (monotonic) and the size cap."""
        cap = self.config.limits.max_response_bytes
        response = self._client.send(request, auth=auth, stream=True) if auth else \
            self._client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise _TooLarge
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise _TooLarge
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _TooSlow
            if time.monotonic() > deadline:
                raise _TooSlow
        finally:
            response.close()
        # A plain, fully read response: decoded already, so the encoding headers no longer apply.
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        ext = {k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")}
        return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks),
                              request=response.request, extensions=ext)

    def _pin(self, provider: str, request: httpx.Request) -> None:
        """Device hosts: check every address the name resolves to, then connect to the checked one."""
        if self.config.sandbox or provider not in DEVICE_PROVIDERS:
            return
        host = request.url.host
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = self._resolve(host, request.url.port or 443)
            except OSError as e:
                raise OutboundBlocked(f"{provider}: cannot resolve {host}: {e}") from None
        if not addresses:
            raise OutboundBlocked(f"{provider}: {host} resolves to no address")
        for ip in addresses:
            reason = device_address_refusal(ip)
            if reason is not None:
                raise OutboundBlocked(f"{provider}: {host} resolves to {ip}, {reason}: a device host must be a "
                                      "public or private-LAN address")
        if literal is None:
            request.extensions = {**request.extensions, "sni_hostname": host}
            request.url = request.url.copy_with(host=addresses[0])

    def _classify(self, provider: str, response: httpx.Response, where: str,
                  scrub: Callable[[str], str]) -> ProviderError:
        response.read()
        retry_after = parse_retry_after(response.headers.get("retry-after"), self._now())
        hook = self._classifiers.get(provider)
        error = hook(response) if hook else None
        if error is None:
            error = error_for_status(provider, response.status_code, _vendor_message(response))
        # Scrub whatever the provider (or hook) put in the message; keep status and request ID.
        error.args = (scrub(f"{where}: {error.message}"),)
        error.message = error.args[0]
        error.request_id = error.request_id or _request_id(response)
        error.status = error.status or response.status_code
        if error.retry_after is None:
            error.retry_after = retry_after
        return error

    def _check(self, provider: str, request: httpx.Request, secrets: Sequence[str],
               scrub: Callable[[str], str], tenant: str | None = None) -> None:
        url = request.url
        host = host_of(str(url))
        if not self.config.may_reach(provider, host, tenant):
            raise OutboundBlocked(f"{provider}: host {host or '(none)'} is not allow-listed for {provider}"
                                  + (f" (tenant {tenant})" if tenant else ""))
        if self.config.https_only and url.scheme != "https":
            raise OutboundBlocked(f"{provider}: {url.scheme}:// refused outside the sandbox; use https")
        query = url.query.decode("ascii", "replace")
        decoded = str(httpx.QueryParams(query))
        raw_values = " ".join(v for _, v in httpx.QueryParams(query).multi_items())
        for text in (query, decoded, raw_values):
            if scrub(text) != text:
                raise OutboundBlocked(f"{provider}: a secret in the URL query; send credentials in headers")


def _scrubber(secrets: Sequence[str]) -> Callable[[str], str]:
    extra = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for s in extra:
            text = text.replace(s, MASK)
        return REDACTOR.scrub(text)

    return scrub


def _request_id(response: httpx.Response) -> str | None:
    for name in REQUEST_ID_HEADERS:
        if name in response.headers:
            return response.headers[name]
    return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _vendor_message(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict):
        for key in ("detailMessage", "message", "error_description", "reason_phrase"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:200]
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:200]
    return response.reason_phrase or f"HTTP {response.status_code}"


def error_for_status(provider: str, status: int, message: str, **kw: Any) -> ProviderError:
    cls: type[ProviderError]
    if status == 429 or status >= 500:
        cls = TemporaryError
    elif status == 401:
        cls = AuthError
    elif status == 403:
        cls = PermissionDenied
    elif status == 404:
        cls = NotFound
    else:
        cls = InvalidRequest
    return cls(provider, message, status=status, **kw)


def graph_error(response: httpx.Response) -> ProviderError | None:
    """Meta's Graph API: the `error.code` decides, not the HTTP status (sources disagree on it)."""
    body = _json(response)
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("code"), int):
        return None
    code: int = err["code"]
    msg = str(err.get("message", ""))[:200] or f"Graph error {code}"
    kw: dict[str, Any] = {"status": response.status_code, "code": code,
                          "request_id": err.get("fbtrace_id") or _request_id(response)}
    provider = "whatsapp"
    if code in META_RATE_LIMIT_CODES or code in META_TRANSIENT_CODES or err.get("is_transient") is True:
        return TemporaryError(provider, msg, **kw)
    if code == 190:
        return AuthError(provider, msg, **kw)
    if code == 10 or 200 <= code <= 299:
        return PermissionDenied(provider, msg, **kw)
    if code == 100 and err.get("error_subcode") == 33:
        return NotFound(provider, msg, **kw)
    if response.status_code == 429 or response.status_code >= 500:
        return TemporaryError(provider, msg, **kw)
    return InvalidRequest(provider, msg, **kw)


def device_address_refusal(ip: str) -> str | None:
    """`tenancy.hosts.check_device_address` (the tenant file's rule, applied again after DNS) for a
    resolver's textual answer; an IPv6 zone suffix (`fe80::1%eth0`) is dropped before judging."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    return check_device_address(address)
