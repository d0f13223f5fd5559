"""The tenant model: what one `tenants/<slug>.yaml` may say, validated at the boundary.

Secrets are `SecretStr` so they never print by accident. The names of the secret fields are derived from
the model (`secret_field_names`) and must equal the `.sops.yaml` `encrypted_regex`; a test and
`tenantctl validate` check the two against each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date, time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from tenancy.hosts import check_destination_url, check_device_host

# The value `tenantctl new` leaves where an admin must supply one; `validate` reports it.
PLACEHOLDER = "CHANGE-ME"

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
KEY_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
_SLUG = re.compile(SLUG_PATTERN)


def is_slug(text: str) -> bool:
    """Whether TEXT is a tenant's slug (SLUG_PATTERN): what a tenant file's name, a URL's or a filter's tenant
    must be before it is used anywhere."""
    return _SLUG.fullmatch(text) is not None


Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]{5,20}$")]
Hostname = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Uuid = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F-]{32,36}$")]

# Bounds on free text: every value is shown in tables, plans and provider calls, and a field without a
# bound let a 40 MB display_name through. Secrets: the longest real ones (JWT access tokens) are ~1-2 KB.
MAX_NAME_CHARS = 200
MAX_USERNAME_CHARS = 128
MAX_SECRET_CHARS = 8192
# A secret that is empty (or only spaces, stripped) would make the server refuse every event of the tenant.
Secret = Annotated[SecretStr, Field(min_length=1, max_length=MAX_SECRET_CHARS)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USERNAME_CHARS)]


def _by_rule(check: Callable[[str], str | None], what: str, rule: str) -> AfterValidator:
    """A field validator refusing what CHECK (a tenancy.hosts rule) gives a reason for: "not WHAT: why (RULE)"."""

    def validate(v: str) -> str:
        why = check(v)
        if why is not None:
            raise ValueError(f"not {what}: {why} ({rule})")
        return v

    return AfterValidator(validate)


# The text pattern is for editors; the rule is tenancy.hosts (no loopback, metadata, provider hosts...).
DeviceHost = Annotated[
    str,
    StringConstraints(pattern=r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(?::[0-9]{1,5})?$"),
    _by_rule(check_device_host, "a device host", "see tenancy/hosts.py for the rule"),
]


def _iana_zone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}: use a name like Europe/Bratislava") from None
    return name


TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_iana_zone)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Status(StrEnum):
    ONBOARDING = "onboarding"
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Hospitable(_Strict):
    """Booking-channel aggregator. Webhooks are signed with `webhook_secret` (HMAC-SHA256)."""

    api_key: Secret = Field(description="Personal access token for the Hospitable v2 API.")
    webhook_secret: Secret = Field(description="HMAC secret Hospitable signs webhooks with.")
    previous_webhook_secret: Secret | None = Field(
        default=None,
        description="The secret being rotated out: still accepted until removed.",
    )


class WhatsApp(_Strict):
    """WhatsApp Cloud API at Meta. `phone_number_id` is the routing key of every inbound message."""

    phone_number_id: Digits | None = Field(
        default=None, description="Meta phone-number ID; inbound messages are routed by it."
    )
    business_account_id: Digits | None = Field(default=None, description="WhatsApp Business Account (WABA) ID.")
    verify_token: Secret = Field(description="Token Meta echoes in the webhook handshake.")
    access_token: Secret = Field(description="System-user access token for the Graph API.")
    test_recipient: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{6,14}$")] | None = Field(
        default=None, description="`tenantctl health --active` sends a test template message here: a phone "
        "number in E.164 without '+' (digits only), e.g. 4915112345678.")


class Nuki(_Strict):
    """Nuki Web API account holding the tenant's smart locks."""

    api_token: Secret = Field(description="Nuki Web API token.")
    webhook_secret: Secret | None = Field(
        default=None,
        description="Secret of the decentral webhook; written back by `tenantctl apply` when created.",
    )


class Smtp(_Strict):
    host: Hostname
    port: int = Field(default=587, ge=1, le=65535)
    username: Username
    password: Secret
    from_address: Email
    starttls: bool = True


class Beds24(_Strict):
    """Legacy, read-only. Its webhooks carry no signature: `webhook_secret` travels in a custom header."""

    token: Secret = Field(description="Beds24 v2 API token.")
    property_ids: list[int] = Field(default_factory=list)
    webhook_secret: Secret = Field(description="Shared secret Beds24 sends in the custom header.")


class Intercom(_Strict):
    """A 2N IP intercom on site (HTTP API with Digest auth)."""

    host: DeviceHost = Field(description="DNS name or site IP of the device, optionally :port (a router's port "
                             "forward); never loopback, link-local, metadata or a provider's host.")
    device_id: str = Field(min_length=1, max_length=64, description="Serial number of the device.")
    username: Username
    password: Secret


class Property(_Strict):
    key: Key
    name: Name
    hospitable_property_id: Uuid | None = None
    beds24_property_id: int | None = None
    nuki_lock_ids: list[int] = Field(default_factory=list)
    intercom: Intercom | None = None
    timezone: TimeZoneName | None = Field(
        default=None, description="IANA time zone of this property's locks and intercom; overrides the tenant's.")

    @field_validator("nuki_lock_ids")
    @classmethod
    def _unique_locks(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("a lock ID is listed twice")
        return v


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


class Role(StrEnum):
    MANAGER = "manager"
    HOST = "host"
    CLEANER = "cleaner"
    MAINTENANCE = "maintenance"


_KEYPAD = re.compile(r"^[1-9]{6}$")
_PIN = re.compile(r"^[0-9]{4,16}$")
_QR = re.compile(r"^[0-9]{10,16}$")


class Access(_Strict):
    """What a teammate may open: a Nuki keypad code and/or a 2N PIN (QR access needs ≥ 10 digits)."""

    keypad_code: Secret | None = Field(
        default=None, description="Nuki keypad code: 6 digits 1-9, not starting with 12."
    )
    intercom_pin: Secret | None = Field(default=None, description="2N PIN / QR code digits.")
    intercom_qr: Secret | None = Field(
        default=None, description="2N QR access: 10 to 16 digits, stored as a switch code of the directory user.")
    weekdays: list[Weekday] = Field(default_factory=lambda: list(Weekday))
    from_time: time | None = None
    until_time: time | None = None
    valid_from: date | None = None
    valid_until: date | None = None

    # Messages name the rule, never the value: the value is a secret.
    @field_validator("keypad_code")
    @classmethod
    def _keypad(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            raw = v.get_secret_value()
            if not _KEYPAD.match(raw) or raw.startswith("12"):
                raise ValueError("a Nuki keypad code is 6 digits 1-9 (no 0) and must not start with 12")
        return v

    @field_validator("intercom_pin")
    @classmethod
    def _pin(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not _PIN.match(v.get_secret_value()):
            raise ValueError("a 2N PIN is 4 to 16 digits")
        return v

    @field_validator("intercom_qr")
    @classmethod
    def _qr(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not _QR.match(v.get_secret_value()):
            raise ValueError("a 2N QR code is 10 to 16 digits")
        return v

    @model_validator(mode="after")
    def _window(self) -> Access:
        if (self.from_time is None) != (self.until_time is None):
            raise ValueError("set both from_time and until_time, or neither")
        if self.from_time and self.until_time and self.from_time >= self.until_time:
            raise ValueError("from_time must be before until_time")
        if self.valid_from and self.valid_until and self.valid_from > self.valid_until:
            raise ValueError("valid_from must not be after valid_until")
        return self


class Teammate(_Strict):
    key: Key
    name: str = Field(min_length=1, max_length=32, description="Shown on locks; Nuki allows 32 characters.")
    role: Role
    properties: list[Key] = Field(default_factory=list, description="Keys of the properties they may enter.")
    access: Access | None = None


# The text pattern is for editors, in the schema only (printable ASCII: RFC 3986's characters, no userinfo, no
# fragment); the rule, tenancy.hosts.check_destination_url, checks the same characters with a sentence that says
# which one and what to do (a pattern's error quotes the regular expression), and the hosts (no metadata,
# link-local, unspecified, disguised address...).
DELIVERY_URL_PATTERN = r"^https?://[A-Za-z0-9.:\[\]-]+(?:[/?][A-Za-z0-9._~!$&'()*+,;=:@/?%-]*)?$"
DeliveryUrl = Annotated[
    str,
    StringConstraints(max_length=2048),
    Field(json_schema_extra={"pattern": DELIVERY_URL_PATTERN}),
    _by_rule(check_destination_url, "a delivery destination", "rule: docs/delivery.md"),
]


class Delivery(_Strict):
    """Where this tenant's accepted events go instead of the platform's destination (docs/delivery.md).

    Optional per provider; the platform-wide TENANTCTL_DELIVERY_URL_<PROVIDER> applies to the rest.
    """

    hospitable: DeliveryUrl | None = None
    whatsapp: DeliveryUrl | None = None
    nuki: DeliveryUrl | None = None
    beds24: DeliveryUrl | None = None


class Tenant(_Strict):
    """One property-management company and every integration it connects."""

    slug: Slug = Field(description="Lower-case letters, digits and hyphens; equal to the file name.")
    display_name: Name
    status: Status = Status.ONBOARDING
    domain: Hostname | None = Field(default=None, description="Overrides the platform domain for webhook URLs.")
    timezone: TimeZoneName | None = Field(
        default=None, description="IANA time zone (e.g. Europe/Bratislava) that access dates and times mean; "
                                  "required once a teammate's access declares days, hours or dates.")
    hospitable: Hospitable | None = None
    whatsapp: WhatsApp | None = None
    nuki: Nuki | None = None
    smtp: Smtp | None = None
    beds24: Beds24 | None = None
    delivery: Delivery | None = Field(default=None, description="Per-provider delivery URL overrides.")
    properties: list[Property] = Field(default_factory=list)
    teammates: list[Teammate] = Field(default_factory=list)

    def providers(self) -> list[str]:
        names = ["hospitable", "whatsapp", "nuki", "smtp", "beds24"]
        found = [n for n in names if getattr(self, n) is not None]
        if any(p.intercom for p in self.properties):
            found.append("twon")  # the provider name `--provider` takes
        return found

    def property(self, key: str) -> Property | None:
        return next((p for p in self.properties if p.key == key), None)


def _model_fields(model: type[BaseModel]) -> Iterator[tuple[str, Any]]:
    for name, info in model.model_fields.items():
        yield name, info.annotation


def secret_field_names(model: type[BaseModel] = Tenant) -> frozenset[str]:
    """Every leaf key that holds a secret, anywhere in the model (what SOPS must encrypt)."""
    found: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def walk(m: type[BaseModel]) -> None:
        if m in seen:
            return
        seen.add(m)
        for name, ann in _model_fields(m):
            for t in _flatten(ann):
                if t is SecretStr:
                    found.add(name)
                elif isinstance(t, type) and issubclass(t, BaseModel):
                    walk(t)

    walk(model)
    return frozenset(found)


def _flatten(ann: Any) -> Iterator[Any]:
    args = getattr(ann, "__args__", None)
    if args:
        for a in args:
            yield from _flatten(a)
    else:
        yield getattr(ann, "__origin__", ann)


def encrypted_regex(model: type[BaseModel] = Tenant) -> str:
    """The `encrypted_regex` for `.sops.yaml` that names exactly the model's secret fields."""
    return "^(" + "|".join(sorted(secret_field_names(model))) + ")$"
