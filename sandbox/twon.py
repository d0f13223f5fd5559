"""2N IP intercom HTTP API: system info and the user directory, behind HTTP Digest auth.

Mounted at `/2n/{device_id}/api`: one emulated device per id. As on the device, application errors are
HTTP 200 with `{"success": false, "error": {"code", "param"?, "description"}}`; only authentication
answers 401 (with a Digest challenge).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import uuid as uuidlib
from collections import deque
from typing import Any

import falcon

from sandbox.common import is_invalid, read_body, send_json

PROVIDER = "2n"
PREFIX = "/2n"
REALM = "HTTP API"

# Error codes as the 2N HTTP API documents them.
ERR_UNSUPPORTED = 1
ERR_MISSING_PARAM = 11
ERR_INVALID_PARAM = 12
ERR_NOT_FOUND = 14


@dataclasses.dataclass
class Access:
    pin: str = ""
    code: list[str] = dataclasses.field(default_factory=list)
    card: list[str] = dataclasses.field(default_factory=list)
    validFrom: str = "0"  # the device's field names
    validTo: str = "0"


@dataclasses.dataclass
class DirUser:
    uuid: str
    name: str
    owner: str = ""
    access: Access = dataclasses.field(default_factory=Access)
    timestamp: int = 0

    def view(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "name": self.name, "owner": self.owner,
                "access": dataclasses.asdict(self.access), "timestamp": self.timestamp}


@dataclasses.dataclass
class Device:
    device_id: str
    username: str
    password: str
    device_name: str = "2N IP Verso"
    serial_number: str = "54-1234-5678"
    sw_version: str = "2.45.0.60.0"
    hw_version: str = "535v1"
    users: dict[str, DirUser] = dataclasses.field(default_factory=dict)
    timestamp: int = 0
    series: str = "8392374829"


@dataclasses.dataclass
class TwoNState:
    devices: dict[str, Device] = dataclasses.field(default_factory=dict)
    _nonces: deque[str] = dataclasses.field(default_factory=lambda: deque(maxlen=1024), repr=False,
                                            compare=False)

    def add_device(self, device_id: str, username: str, password: str, **fields: Any) -> Device:
        device = Device(device_id, username, password, **fields)
        self.devices[device_id] = device
        return device

    def add_user(self, device_id: str, name: str, owner: str = "", pin: str = "",
                 user_uuid: str | None = None) -> DirUser:
        device = self.devices[device_id]
        device.timestamp += 1
        user = DirUser(user_uuid or str(uuidlib.uuid4()).upper(), name, owner, Access(pin=pin),
                       device.timestamp)
        device.users[user.uuid] = user
        return user


def fault_response(kind: str, retry_after_s: float) -> tuple[int, dict[str, str], bytes]:
    # The device has no rate-limit shape of its own: a busy device answers 503 / 500.
    status = 503 if kind == "429" else 500
    headers = {"content-type": "text/plain"}
    if kind == "429":
        headers["Retry-After"] = str(max(0, round(retry_after_s)))
    return status, headers, b"Service Unavailable" if status == 503 else b"Internal Server Error"


class ApiError(Exception):
    def __init__(self, code: int, description: str, param: str | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.param = code, description, param

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "description": self.description}
        if self.param:
            err["param"] = self.param
        return {"success": False, "error": err}


_DIGEST_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _digest_ok(state: TwoNState, device: Device, req: falcon.Request) -> bool:
    header = req.get_header("Authorization") or ""
    if not header.lower().startswith("digest "):
        return False
    params = {m[0].lower(): m[1] or m[2] for m in _DIGEST_PARAM.findall(header[7:])}
    if params.get("nonce") not in state._nonces or params.get("username") != device.username:
        return False
    uri = params.get("uri", "")
    if uri.split("?")[0] != (req.root_path or "") + req.path:
        return False
    ha1 = _md5(f"{device.username}:{REALM}:{device.password}")
    ha2 = _md5(f"{req.method}:{uri}")
    if params.get("qop") == "auth":
        nc, cnonce = params.get("nc", ""), params.get("cnonce", "")
        expected = _md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    else:
        expected = _md5(f"{ha1}:{params['nonce']}:{ha2}")
    return hmac.compare_digest(expected, params.get("response", ""))


def _challenge(state: TwoNState, resp: falcon.Response) -> None:
    nonce = secrets.token_hex(16)
    state._nonces.append(nonce)
    resp.status = 401
    resp.content_type = "text/plain"
    resp.data = b"Unauthorized"
    resp.set_header("WWW-Authenticate",
                    f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", algorithm=MD5')


class DeviceApiResource:
    def __init__(self, state_ref: Any) -> None:
        self._state = state_ref

    def on_get(self, req: falcon.Request, resp: falcon.Response, device_id: str, section: str,
               action: str) -> None:
        self._handle(req, resp, device_id, section, action)

    def on_post(self, req: falcon.Request, resp: falcon.Response, device_id: str, section: str,
                action: str) -> None:
        self._handle(req, resp, device_id, section, action)

    def on_put(self, req: falcon.Request, resp: falcon.Response, device_id: str, section: str,
               action: str) -> None:
        self._handle(req, resp, device_id, section, action)

    def _handle(self, req: falcon.Request, resp: falcon.Response, device_id: str, section: str,
                action: str) -> None:
        state: TwoNState = self._state()
        device = state.devices.get(device_id)
        if device is None:
            # No such host: what a client sees from an unreachable device is not an HTTP answer, but
            # a 404 keeps the sandbox honest about the mistake.
            raise falcon.HTTPNotFound()
        if not _digest_ok(state, device, req):
            _challenge(state, resp)
            return
        try:
            result = self._dispatch(device, req, f"{section}/{action}")
        except ApiError as err:
            send_json(resp, 200, err.body())
            return
        send_json(resp, 200, {"success": True, "result": result} if result is not None else {"success": True})

    def _dispatch(self, device: Device, req: falcon.Request, function: str) -> Any:
        if function == "system/info" and req.method == "GET":
            return {"variant": device.device_name, "serialNumber": device.serial_number,
                    "hwVersion": device.hw_version, "swVersion": device.sw_version,
                    "buildType": "", "deviceName": device.device_name}
        if function == "dir/query" and req.method == "POST":
            body = _body(req, required=False)
            since = int((body.get("iterator") or {}).get("timestamp", 0)) if body else 0
            users = [u.view() for u in device.users.values() if u.timestamp > since]
            return {"series": device.series, "timestamp": device.timestamp, "users": users}
        if function in ("dir/create", "dir/update", "dir/delete") and req.method == "PUT":
            return _write(device, function.split("/")[1], _body(req, required=True))
        raise ApiError(ERR_UNSUPPORTED, "function not supported")


def _body(req: falcon.Request, required: bool) -> dict[str, Any]:
    _, parsed = read_body(req)
    if parsed is None and not required:
        return {}
    if is_invalid(parsed) or not isinstance(parsed, dict):
        raise ApiError(ERR_INVALID_PARAM, "invalid request body", "body")
    return parsed


def _write(device: Device, op: str, body: dict[str, Any]) -> dict[str, Any]:
    users = body.get("users")
    if not isinstance(users, list) or not users:
        raise ApiError(ERR_MISSING_PARAM, "missing mandatory parameter", "users")
    # Validate every entry first so a bad entry never half-applies the request.
    staged: list[tuple[str, DirUser | None, dict[str, Any]]] = []
    user: DirUser
    for i, item in enumerate(users):
        if not isinstance(item, dict):
            raise ApiError(ERR_INVALID_PARAM, "invalid parameter value", f"users[{i}]")
        if op == "delete":
            if "uuid" in item:
                if item["uuid"] not in device.users:
                    raise ApiError(ERR_NOT_FOUND, "entry not found", f"users[{i}].uuid")
                staged.append(("uuid", None, item))
            elif "owner" in item:
                staged.append(("owner", None, item))
            else:
                raise ApiError(ERR_MISSING_PARAM, "missing mandatory parameter", f"users[{i}].uuid")
            continue
        if op == "update":
            current = device.users.get(str(item.get("uuid", "")))
            if current is None:
                raise ApiError(ERR_NOT_FOUND, "entry not found", f"users[{i}].uuid")
            user = dataclasses.replace(current, access=dataclasses.replace(current.access))
        else:
            if "uuid" in item and item["uuid"] in device.users:
                raise ApiError(ERR_INVALID_PARAM, "entry already exists", f"users[{i}].uuid")
            if not item.get("name"):
                raise ApiError(ERR_MISSING_PARAM, "missing mandatory parameter", f"users[{i}].name")
            user = DirUser(str(item.get("uuid") or str(uuidlib.uuid4()).upper()), "")
        _merge(user, item, i)
        staged.append(("user", user, item))
    result: list[dict[str, Any]] = []
    for kind, staged_user, item in staged:
        device.timestamp += 1
        if kind == "uuid":
            del device.users[item["uuid"]]
            result.append({"uuid": item["uuid"], "timestamp": device.timestamp})
        elif kind == "owner":
            gone = [u for u in device.users.values() if u.owner == item["owner"]]
            for u in gone:
                del device.users[u.uuid]
                result.append({"uuid": u.uuid, "timestamp": device.timestamp})
        elif staged_user is not None:
            staged_user.timestamp = device.timestamp
            device.users[staged_user.uuid] = staged_user
            result.append({"uuid": staged_user.uuid, "timestamp": device.timestamp})
    return {"users": result}


def _merge(user: DirUser, item: dict[str, Any], i: int) -> None:
    for key in ("name", "owner"):
        if key in item:
            if not isinstance(item[key], str):
                raise ApiError(ERR_INVALID_PARAM, "invalid parameter value", f"users[{i}].{key}")
            setattr(user, key, item[key])
    access = item.get("access")
    if access is None:
        return
    if not isinstance(access, dict):
        raise ApiError(ERR_INVALID_PARAM, "invalid parameter value", f"users[{i}].access")
    pin = access.get("pin")
    if pin is not None:
        if not isinstance(pin, str) or (pin and not (pin.isdigit() and 2 <= len(pin) <= 15)):
            raise ApiError(ERR_INVALID_PARAM, "invalid parameter value", f"users[{i}].access.pin")
        user.access.pin = pin
    for key in ("code", "card"):
        if key in access:
            values = access[key]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ApiError(ERR_INVALID_PARAM, "invalid parameter value", f"users[{i}].access.{key}")
            # Switch codes (also what a scanned QR code is matched against) are digits, as on the device.
            if key == "code" and not all(v.isdigit() and 2 <= len(v) <= 16 for v in values):
                raise ApiError(ERR_INVALID_PARAM, "invalid parameter value", f"users[{i}].access.code")
            setattr(user.access, key, list(values))
    for key in ("validFrom", "validTo"):
        if key in access:
            setattr(user.access, key, str(access[key]))


def register(app: falcon.App[falcon.Request, falcon.Response], state_ref: Any) -> None:
    app.add_route(PREFIX + "/{device_id}/api/{section}/{action}", DeviceApiResource(state_ref))
