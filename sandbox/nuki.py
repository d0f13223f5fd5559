"""Nuki Web API: smart locks, keypad-code authorisations (eventually consistent) and decentral webhooks.

Mounted at `/nuki`. Writes to authorisations answer 204 and only reach the lock later, as on the real
service: a pending operation becomes visible after `apply_after_reads` reads of that lock's auths or
`apply_after_s` seconds, whichever comes first (both 0: immediately). Errors are serialised Java
exceptions with a `detailMessage`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
import urllib.parse
from typing import Any

import falcon

from sandbox.common import Clock, bearer_token, default_clock, is_invalid, iso, read_body, send_json

PROVIDER = "nuki"
PREFIX = "/nuki"
KEYPAD_CODE = 13
WEBHOOK_FEATURES = frozenset(
    {"DEVICE_STATUS", "DEVICE_MASTERDATA", "DEVICE_CONFIG", "DEVICE_LOGS", "DEVICE_AUTHS", "ACCOUNT_USER"})


@dataclasses.dataclass
class Auth:
    id: str
    smartlock_id: int
    auth_id: int
    name: str
    type: int = KEYPAD_CODE
    code: int | None = None
    enabled: bool = True
    remote_allowed: bool = False
    lock_count: int = 0
    allowed_from_date: str | None = None
    allowed_until_date: str | None = None
    allowed_week_days: int = 127
    allowed_from_time: int = 0
    allowed_until_time: int = 0
    account_user_id: int | None = None
    creation_date: str = ""
    update_date: str = ""

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "smartlockId": self.smartlock_id, "authId": self.auth_id, "name": self.name,
            "type": self.type, "enabled": self.enabled, "remoteAllowed": self.remote_allowed,
            "lockCount": self.lock_count, "allowedWeekDays": self.allowed_week_days,
            "allowedFromTime": self.allowed_from_time, "allowedUntilTime": self.allowed_until_time,
            "creationDate": self.creation_date, "updateDate": self.update_date,
        }
        if self.code is not None:
            out["code"] = self.code
        if self.allowed_from_date:
            out["allowedFromDate"] = self.allowed_from_date
        if self.allowed_until_date:
            out["allowedUntilDate"] = self.allowed_until_date
        if self.account_user_id is not None:
            out["accountUserId"] = self.account_user_id
        return out


@dataclasses.dataclass
class PendingOp:
    kind: str  # create | update | delete
    smartlock_id: int
    auth: Auth | None  # the auth as it will be (create/update)
    auth_key: str  # Auth.id it concerns
    reads_left: int
    due_at: float | None


@dataclasses.dataclass
class Smartlock:
    smartlock_id: int
    account_id: int
    name: str
    type: int = 4
    server_state: int = 0
    auths: dict[str, Auth] = dataclasses.field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {
            "smartlockId": self.smartlock_id, "accountId": self.account_id, "type": self.type,
            "authId": 0, "name": self.name, "favorite": False, "serverState": self.server_state,
            "adminPinState": 0, "state": {
                "mode": 2, "state": 1, "trigger": 0, "lastAction": 2, "batteryCritical": False,
                "batteryCharge": 87, "doorState": 2, "ringToOpenTimer": 0, "nightMode": False},
        }


@dataclasses.dataclass
class Webhook:
    id: int
    webhook_url: str
    webhook_features: list[str]
    secret: str

    def view(self, with_secret: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "webhookUrl": self.webhook_url,
                               "webhookFeatures": list(self.webhook_features)}
        if with_secret:
            out["secret"] = self.secret
        return out


@dataclasses.dataclass
class NukiAccount:
    account_id: int
    smartlocks: dict[int, Smartlock] = dataclasses.field(default_factory=dict)
    webhooks: dict[int, Webhook] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class NukiState:
    accounts: dict[str, NukiAccount] = dataclasses.field(default_factory=dict)  # by API token
    pending: list[PendingOp] = dataclasses.field(default_factory=list)
    apply_after_reads: int = 1
    apply_after_s: float = 0.0  # 0: no time trigger (reads only); both 0: immediate
    next_auth_id: int = 1
    next_webhook_id: int = 1
    # Latency knob: seconds listing a lock's auths takes, by lock ID (a slow bridge; health's 2 s check).
    slow_locks: dict[str, float] = dataclasses.field(default_factory=dict)
    _clock: Clock = dataclasses.field(default=default_clock, repr=False, compare=False)

    # Seeding -----------------------------------------------------------------------------------
    def add_account(self, token: str, account_id: int | None = None) -> NukiAccount:
        if token not in self.accounts:
            self.accounts[token] = NukiAccount(account_id or 1000 + len(self.accounts))
        return self.accounts[token]

    def add_smartlock(self, token: str, smartlock_id: int, name: str, type_: int = 4) -> Smartlock:
        account = self.add_account(token)
        lock = Smartlock(smartlock_id, account.account_id, name, type_)
        account.smartlocks[smartlock_id] = lock
        return lock

    def add_keypad_code(self, token: str, smartlock_id: int, name: str, code: int, **fields: Any) -> Auth:
        """Seed an auth that is already on the lock (no pending phase)."""
        lock = self.accounts[token].smartlocks[smartlock_id]
        auth = self._new_auth(smartlock_id, name, code)
        for key, value in fields.items():
            setattr(auth, key, value)
        lock.auths[auth.id] = auth
        return auth

    def settle(self) -> None:
        """Apply every pending operation now (a test's "wait until the lock caught up")."""
        for op in list(self.pending):
            self._apply(op)
        self.pending.clear()

    # Internals ---------------------------------------------------------------------------------
    def _new_auth(self, smartlock_id: int, name: str, code: int | None) -> Auth:
        now = iso(self._clock())
        auth_id = self.next_auth_id
        self.next_auth_id += 1
        key = hashlib.sha1(f"{smartlock_id}:{auth_id}".encode(), usedforsecurity=False).hexdigest()[:24]
        return Auth(id=key, smartlock_id=smartlock_id, auth_id=auth_id, name=name, code=code,
                    creation_date=now, update_date=now)

    def _find_lock(self, smartlock_id: int) -> Smartlock | None:
        for account in self.accounts.values():
            if smartlock_id in account.smartlocks:
                return account.smartlocks[smartlock_id]
        return None

    def _apply(self, op: PendingOp) -> None:
        lock = self._find_lock(op.smartlock_id)
        if lock is None:
            return
        if op.kind == "delete":
            lock.auths.pop(op.auth_key, None)
        elif op.auth is not None:
            lock.auths[op.auth_key] = op.auth

    def _enqueue(self, op: PendingOp) -> None:
        if self.apply_after_reads <= 0 and self.apply_after_s <= 0:
            self._apply(op)
        else:
            self.pending.append(op)

    def _on_read(self, smartlock_ids: set[int]) -> None:
        """Apply what is due before this read is answered: time-due operations, and read-counted ones
        once `apply_after_reads` earlier reads have shown the old state."""
        now = self._clock()
        for op in list(self.pending):
            if op.due_at is not None and now >= op.due_at:
                self._apply(op)
                self.pending.remove(op)
        for op in list(self.pending):
            if op.smartlock_id in smartlock_ids and self.apply_after_reads > 0:
                op.reads_left -= 1
                if op.reads_left < 0:
                    self._apply(op)
                    self.pending.remove(op)

    def _is_pending(self, auth_key: str) -> bool:
        return any(op.auth_key == auth_key for op in self.pending)


class NukiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error_body(message: str) -> dict[str, Any]:
    # What Jackson makes of a Java exception: the message plus empty traces.
    return {"detailMessage": message, "stackTrace": [], "suppressedExceptions": []}


def fault_response(kind: str, retry_after_s: float) -> tuple[int, dict[str, str], bytes]:
    if kind == "429":
        return 429, {"content-type": "application/json", "Retry-After": str(max(0, round(retry_after_s)))}, \
            json.dumps(error_body("Too many requests")).encode()
    return 500, {"content-type": "application/json"}, json.dumps(error_body("Internal server error")).encode()


def _validate_code(code: Any, lock: Smartlock, exclude: str | None, pending: list[PendingOp]) -> int:
    text = str(code) if isinstance(code, int) and not isinstance(code, bool) else ""
    if len(text) != 6 or any(c not in "123456789" for c in text):
        raise NukiError(400, "Parameter 'code' is invalid: it must have 6 digits from 1 to 9")
    if text.startswith("12"):
        raise NukiError(400, "Parameter 'code' is invalid: it must not start with 12")
    taken = {a.code for a in lock.auths.values() if a.id != exclude}
    taken |= {op.auth.code for op in pending if op.auth is not None and op.smartlock_id == lock.smartlock_id
              and op.auth_key != exclude}
    if code in taken:
        raise NukiError(409, "Parameter 'code' conflicts: the code is already in use on this smartlock")
    return int(code)


def _validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise NukiError(400, "Parameter 'name' is required")
    if len(name) > 32:
        raise NukiError(400, "Parameter 'name' is invalid: max 32 characters")
    return name


def _int_field(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise NukiError(400, f"Parameter '{key}' is invalid")
    return value


def _apply_fields(auth: Auth, body: dict[str, Any], clear_missing: bool) -> None:
    """Copy the writable fields; on update the real API resets what was not sent (its quirk)."""
    fresh = Auth(id="", smartlock_id=0, auth_id=0, name="")
    for attr, key, lo, hi in (("allowed_week_days", "allowedWeekDays", 0, 127),
                              ("allowed_from_time", "allowedFromTime", 0, 1439),
                              ("allowed_until_time", "allowedUntilTime", 0, 1439)):
        if key in body or clear_missing:
            setattr(auth, attr, _int_field(body, key, getattr(fresh, attr), lo, hi))
    for attr, key in (("allowed_from_date", "allowedFromDate"), ("allowed_until_date", "allowedUntilDate")):
        if key in body or clear_missing:
            setattr(auth, attr, body.get(key) or None)
    for attr, key, default in (("remote_allowed", "remoteAllowed", False), ("enabled", "enabled", True)):
        if key in body or clear_missing:
            value = body.get(key, default)
            if not isinstance(value, bool):
                raise NukiError(400, f"Parameter '{key}' is invalid")
            setattr(auth, attr, value)


class _Base:
    def __init__(self, state_ref: Any) -> None:
        self._state = state_ref

    def _account(self, req: falcon.Request) -> tuple[NukiState, NukiAccount]:
        state: NukiState = self._state()
        token = bearer_token(req)
        account = state.accounts.get(token or "")
        if account is None:
            raise NukiError(401, "Your access token is not authorized")
        return state, account

    @staticmethod
    def _lock(account: NukiAccount, smartlock_id: str) -> Smartlock:
        try:
            lock = account.smartlocks.get(int(smartlock_id))
        except ValueError:
            lock = None
        if lock is None:
            raise NukiError(403, "Forbidden: smartlock is not part of your account")
        return lock

    @staticmethod
    def _body(req: falcon.Request) -> dict[str, Any]:
        _, parsed = read_body(req)
        if is_invalid(parsed) or not isinstance(parsed, dict):
            raise NukiError(400, "Request body must be a JSON object")
        return parsed

    @staticmethod
    def _types(req: falcon.Request) -> set[int] | None:
        raw = req.get_param("types")
        if not raw:
            return None
        try:
            return {int(t) for t in raw.split(",") if t.strip()}
        except ValueError as exc:
            raise NukiError(400, "Parameter 'types' is invalid") from exc


def _guard(handler: Any) -> Any:
    def wrapped(self: Any, req: falcon.Request, resp: falcon.Response, **kw: Any) -> None:
        try:
            handler(self, req, resp, **kw)
        except NukiError as err:
            send_json(resp, err.status, error_body(err.message))
    return wrapped


class SmartlocksResource(_Base):
    @_guard
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _, account = self._account(req)
        send_json(resp, 200, [lock.view() for lock in account.smartlocks.values()])


class AccountAuthsResource(_Base):
    @_guard
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state, account = self._account(req)
        types = self._types(req)
        state._on_read(set(account.smartlocks))
        out = [a.view() for lock in account.smartlocks.values() for a in lock.auths.values()
               if types is None or a.type in types]
        send_json(resp, 200, out)


class LockAuthsResource(_Base):
    @_guard
    def on_get(self, req: falcon.Request, resp: falcon.Response, smartlock_id: str) -> None:
        state, account = self._account(req)
        lock = self._lock(account, smartlock_id)
        types = self._types(req)
        state._on_read({lock.smartlock_id})
        delay = state.slow_locks.get(str(lock.smartlock_id), 0.0)
        if delay > 0:
            time.sleep(delay)
        send_json(resp, 200, [a.view() for a in lock.auths.values() if types is None or a.type in types])

    @_guard
    def on_put(self, req: falcon.Request, resp: falcon.Response, smartlock_id: str) -> None:
        state, account = self._account(req)
        lock = self._lock(account, smartlock_id)
        body = self._body(req)
        name = _validate_name(body.get("name"))
        if "remoteAllowed" not in body:
            raise NukiError(400, "Parameter 'remoteAllowed' is required")
        type_ = body.get("type", 0)
        if type_ != KEYPAD_CODE:
            if body.get("accountUserId") is None:
                raise NukiError(400, "Parameter 'accountUserId' is required for this type")
            raise NukiError(400, "Only keypad codes (type 13) are supported by the sandbox")
        code = _validate_code(body.get("code"), lock, None, state.pending)
        auth = state._new_auth(lock.smartlock_id, name, code)
        _apply_fields(auth, body, clear_missing=False)
        state._enqueue(_pending(state, "create", lock.smartlock_id, auth, auth.id))
        resp.status = 204


class LockAuthResource(_Base):
    @_guard
    def on_get(self, req: falcon.Request, resp: falcon.Response, smartlock_id: str, auth_key: str) -> None:
        _, account = self._account(req)
        lock = self._lock(account, smartlock_id)
        auth = lock.auths.get(auth_key)
        if auth is None:
            raise NukiError(404, "Smartlock auth not found")
        send_json(resp, 200, auth.view())

    @_guard
    def on_post(self, req: falcon.Request, resp: falcon.Response, smartlock_id: str, auth_key: str) -> None:
        state, account = self._account(req)
        lock = self._lock(account, smartlock_id)
        current = lock.auths.get(auth_key)
        if current is None:
            raise NukiError(404, "Smartlock auth not found")
        if state._is_pending(auth_key):
            raise NukiError(423, "Locked: another operation on this authorization is in progress")
        body = self._body(req)
        updated = dataclasses.replace(current, name=_validate_name(body.get("name")))
        if "code" in body:
            updated.code = _validate_code(body["code"], lock, auth_key, state.pending)
        _apply_fields(updated, body, clear_missing=True)
        updated.update_date = iso(state._clock())
        state._enqueue(_pending(state, "update", lock.smartlock_id, updated, auth_key))
        resp.status = 204

    @_guard
    def on_delete(self, req: falcon.Request, resp: falcon.Response, smartlock_id: str, auth_key: str) -> None:
        state, account = self._account(req)
        lock = self._lock(account, smartlock_id)
        if auth_key not in lock.auths:
            raise NukiError(404, "Smartlock auth not found")
        if state._is_pending(auth_key):
            raise NukiError(423, "Locked: another operation on this authorization is in progress")
        state._enqueue(_pending(state, "delete", lock.smartlock_id, None, auth_key))
        resp.status = 204


def _pending(state: NukiState, kind: str, smartlock_id: int, auth: Auth | None, key: str) -> PendingOp:
    due = state._clock() + state.apply_after_s if state.apply_after_s > 0 else None
    return PendingOp(kind, smartlock_id, auth, key, state.apply_after_reads, due)


class WebhooksResource(_Base):
    @_guard
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _, account = self._account(req)
        send_json(resp, 200, [w.view(with_secret=False) for w in account.webhooks.values()])

    @_guard
    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        state, account = self._account(req)
        body = self._body(req)
        url = body.get("webhookUrl")
        parsed = urllib.parse.urlparse(url if isinstance(url, str) else "")
        if parsed.scheme != "https" or not parsed.netloc:
            raise NukiError(400, "Parameter 'webhookUrl' is invalid: it must be an https URL")
        features = body.get("webhookFeatures")
        if (not isinstance(features, list) or not features or not set(features) <= WEBHOOK_FEATURES
                or len(set(features)) != len(features)):
            raise NukiError(400, "Parameter 'webhookFeatures' is invalid")
        hook = Webhook(state.next_webhook_id, str(url), list(features), secrets.token_hex(20))
        state.next_webhook_id += 1
        account.webhooks[hook.id] = hook
        send_json(resp, 200, hook.view(with_secret=True))


class WebhookResource(_Base):
    @_guard
    def on_delete(self, req: falcon.Request, resp: falcon.Response, webhook_id: str) -> None:
        _, account = self._account(req)
        try:
            hook_id = int(webhook_id)
        except ValueError as exc:
            raise NukiError(400, "Parameter 'id' is invalid") from exc
        if account.webhooks.pop(hook_id, None) is None:
            raise NukiError(404, "Decentral webhook not found")
        resp.status = 204


def register(app: falcon.App[falcon.Request, falcon.Response], state_ref: Any) -> None:
    app.add_route(PREFIX + "/smartlock", SmartlocksResource(state_ref))
    app.add_route(PREFIX + "/smartlock/auth", AccountAuthsResource(state_ref))
    app.add_route(PREFIX + "/smartlock/{smartlock_id}/auth", LockAuthsResource(state_ref))
    app.add_route(PREFIX + "/smartlock/{smartlock_id}/auth/{auth_key}", LockAuthResource(state_ref))
    app.add_route(PREFIX + "/api/decentralWebhook", WebhooksResource(state_ref))
    app.add_route(PREFIX + "/api/decentralWebhook/{webhook_id}", WebhookResource(state_ref))
