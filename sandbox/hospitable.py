"""Hospitable public API v2: properties, paged the Laravel way.

Mounted at `/hospitable/v2`. Every response carries `X-hospitable-trace`. The `links` come back as
http:// URLs (a quirk of the real service: clients must build the next URL themselves), and unknown query
parameters are silently ignored with a 200.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
from typing import Any

import falcon

from sandbox.common import bearer_token, send_json

PROVIDER = "hospitable"
PREFIX = "/hospitable/v2"
MAX_PER_PAGE = 100


@dataclasses.dataclass
class Property:
    id: str
    name: str
    timezone: str = "+0100"
    city: str = "Berlin"
    country: str = "DE"
    listed: bool = True

    def view(self) -> dict[str, Any]:
        # Every field the spec marks required, with plausible values.
        return {
            "id": self.id, "name": self.name, "public_name": self.name, "picture": "",
            "address": {"number": "1", "street": "Sandboxstraße", "city": self.city, "state": "",
                        "country": self.country, "postcode": "10115",
                        "coordinates": {"latitude": 52.52, "longitude": 13.405},
                        "display": f"Sandboxstraße 1, 10115 {self.city}, {self.country}"},
            "timezone": self.timezone, "listed": self.listed, "amenities": [], "description": "",
            "summary": "", "check-in": "15:00", "check-out": "11:00", "currency": "EUR",
            "capacity": {"max": 2, "bedrooms": 1, "beds": 1, "bathrooms": 1},
            "room_details": [], "house_rules": {"pets_allowed": False, "smoking_allowed": False,
                                                "events_allowed": None},
            "listings": [], "tags": [], "property_type": "apartment", "room_type": "entire_home",
            "calendar_restricted": False,
        }


@dataclasses.dataclass
class HospitableAccount:
    properties: dict[str, Property] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class HospitableState:
    accounts: dict[str, HospitableAccount] = dataclasses.field(default_factory=dict)  # by access token

    def add_account(self, token: str) -> HospitableAccount:
        return self.accounts.setdefault(token, HospitableAccount())

    def add_property(self, token: str, property_id: str, name: str, **fields: Any) -> Property:
        prop = Property(id=property_id, name=name, **fields)
        self.add_account(token).properties[property_id] = prop
        return prop


def _trace() -> str:
    return secrets.token_hex(16)


def fault_response(kind: str, retry_after_s: float) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "application/json", "X-hospitable-trace": _trace()}
    if kind == "429":
        headers["Retry-After"] = str(max(0, round(retry_after_s)))
        return 429, headers, json.dumps({"message": "Too Many Attempts."}).encode()
    return 500, headers, json.dumps({"status_code": 500, "reason_phrase": "Server Error"}).encode()


class PropertiesResource:
    def __init__(self, state_ref: Any) -> None:
        self._state = state_ref

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state: HospitableState = self._state()
        trace = {"X-hospitable-trace": _trace()}
        account = state.accounts.get(bearer_token(req) or "")
        if account is None:
            send_json(resp, 401, {"message": "Unauthenticated."}, trace)
            return
        errors: dict[str, list[str]] = {}
        page = _int_param(req, "page", 1, errors)
        per_page = _int_param(req, "per_page", 10, errors)
        if per_page is not None and not 1 <= per_page <= MAX_PER_PAGE:
            errors["per_page"] = [f"The per page field must be between 1 and {MAX_PER_PAGE}."]
        if page is not None and page < 1:
            errors["page"] = ["The page field must be at least 1."]
        if errors or page is None or per_page is None:
            first = next(iter(errors.values()))[0]
            send_json(resp, 422, {"message": first, "errors": errors}, trace)
            return
        props = list(account.properties.values())
        total = len(props)
        last_page = max(1, math.ceil(total / per_page))
        chunk = props[(page - 1) * per_page: page * per_page]
        # The real API hands out http:// links even though it is only reachable over https.
        path = f"http://{req.host}{req.root_path or ''}{req.path}"

        def link(n: int) -> str:
            return f"{path}?page={n}"

        send_json(resp, 200, {
            "data": [p.view() for p in chunk],
            "links": {"first": link(1), "last": link(last_page),
                      "prev": link(page - 1) if page > 1 else None,
                      "next": link(page + 1) if page < last_page else None},
            # Laravel's paginator: from/to are null on an empty page (the spec says integer: see errata).
            "meta": {"current_page": page, "from": (page - 1) * per_page + 1 if chunk else None,
                     "last_page": last_page, "path": path, "per_page": per_page,
                     "to": (page - 1) * per_page + len(chunk) if chunk else None, "total": total,
                     "links": [{"url": link(n), "label": str(n), "active": n == page}
                               for n in range(1, last_page + 1)]},
        }, trace)


def _int_param(req: falcon.Request, name: str, default: int, errors: dict[str, list[str]]) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        errors[name] = [f"The {name.replace('_', ' ')} field must be an integer."]
        return None


def register(app: falcon.App[falcon.Request, falcon.Response], state_ref: Any) -> None:
    app.add_route(PREFIX + "/properties", PropertiesResource(state_ref))
