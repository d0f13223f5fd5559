"""Beds24 API v2 (read-only here): properties, with the five-minute credit limit.

Mounted at `/beds24/v2`. Auth is a `token` header. Every answer reports the account's credits in
`x-five-min-limit-remaining`, `x-five-min-limit-resets-in` and `x-request-cost`; past the limit the
answer is 429 until the window resets.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import falcon

from sandbox.common import Clock, default_clock, send_json

PROVIDER = "beds24"
PREFIX = "/beds24/v2"


@dataclasses.dataclass
class Beds24Property:
    id: int
    name: str
    property_type: str = "apartment"
    currency: str = "EUR"

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "propertyType": self.property_type,
                "currency": self.currency, "roomTypes": []}


@dataclasses.dataclass
class Beds24Account:
    properties: dict[int, Beds24Property] = dataclasses.field(default_factory=dict)
    window_start: float = 0.0
    credits_used: int = 0


@dataclasses.dataclass
class Beds24State:
    accounts: dict[str, Beds24Account] = dataclasses.field(default_factory=dict)  # by token
    credit_limit: int = 100
    window_s: float = 300.0
    _clock: Clock = dataclasses.field(default=default_clock, repr=False, compare=False)

    def add_account(self, token: str) -> Beds24Account:
        return self.accounts.setdefault(token, Beds24Account())

    def add_property(self, token: str, property_id: int, name: str) -> Beds24Property:
        prop = Beds24Property(property_id, name)
        self.add_account(token).properties[property_id] = prop
        return prop


def fault_response(kind: str, retry_after_s: float) -> tuple[int, dict[str, str], bytes]:
    if kind == "429":
        return 429, {"content-type": "application/json", "Retry-After": str(max(0, round(retry_after_s)))}, \
            json.dumps({"success": False, "type": "error", "code": 429,
                        "error": "Credit limit exceeded"}).encode()
    return 500, {"content-type": "application/json"}, json.dumps(
        {"success": False, "type": "error", "code": 500, "error": "Internal error"}).encode()


class PropertiesResource:
    COST = 1

    def __init__(self, state_ref: Any) -> None:
        self._state = state_ref

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state: Beds24State = self._state()
        account = state.accounts.get(req.get_header("token") or "")
        if account is None:
            send_json(resp, 401, {"success": False, "type": "error", "code": 401,
                                  "error": "Token is missing or invalid"})
            return
        now = state._clock()
        if now >= account.window_start + state.window_s:
            account.window_start, account.credits_used = now, 0
        resets_in = max(0, round(account.window_start + state.window_s - now))
        if account.credits_used + self.COST > state.credit_limit:
            send_json(resp, 429, {"success": False, "type": "error", "code": 429,
                                  "error": "Credit limit exceeded"}, {
                "x-five-min-limit-remaining": str(state.credit_limit - account.credits_used),
                "x-five-min-limit-resets-in": str(resets_in), "x-request-cost": "0",
                "Retry-After": str(resets_in)})
            return
        account.credits_used += self.COST
        wanted = {int(i) for i in req.get_param_as_list("id") or [] if i.isdigit()}
        data = [p.view() for p in account.properties.values() if not wanted or p.id in wanted]
        send_json(resp, 200, {"success": True, "type": "property", "count": len(data),
                              "pages": {"nextPageExists": False, "nextPageLink": None}, "data": data}, {
            "x-five-min-limit-remaining": str(state.credit_limit - account.credits_used),
            "x-five-min-limit-resets-in": str(resets_in), "x-request-cost": str(self.COST)})


def register(app: falcon.App[falcon.Request, falcon.Response], state_ref: Any) -> None:
    app.add_route(PREFIX + "/properties", PropertiesResource(state_ref))
