"""Platform settings from the environment (prefix TENANTCTL_) and `.env`; see `.env.example`.

Per-platform secrets live here, not in tenant files: the Meta app secret signs every tenant's WhatsApp
webhooks, so it belongs to the platform.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_ADMIN_TOKEN = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENANTCTL_", env_file=".env", extra="ignore",
                                      hide_input_in_errors=True)  # a rejected value may be a secret

    tenants: Path = Field(default=Path("tenants"), description="Directory of tenant files.")
    domain: str = Field(default="ops.example.com", description="Public domain of the webhook server.")
    state_dir: Path = Field(default=Path(".state"), description="Local state: SQLite database, sandbox state.")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "TENANTCTL_DATABASE_URL"),
        description="SQLAlchemy URL; default: SQLite under the state directory.",
    )
    meta_app_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Meta app secrets, comma-separated, newest first (rotation)."
    )
    meta_app_id: str | None = Field(default=None, description="Meta app ID: plan its webhook subscription.")
    meta_app_token: SecretStr | None = Field(
        default=None, description="Meta app access token (`<app-id>|<app-secret>`): apply sets the subscription."
    )
    meta_verify_token: SecretStr | None = Field(
        default=None, description="Verify token of the app-level WhatsApp callback (/api/webhooks/wa)."
    )
    admin_token: SecretStr | None = Field(default=None, description="Bearer token for /admin endpoints.")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest webhook body accepted.")
    metrics_store_ttl_s: float = Field(default=15.0, ge=0,
                                       description="/metrics reads health and last events from the database at "
                                                   "most this often (seconds).")
    sandbox: bool = Field(default=False, description="Point every provider at the local sandbox.")
    state_refresh_s: float = Field(
        default=2.0, gt=0, description="How often a webhook worker checks the provider state store for new secrets.")
    # -- delivery to the platform (`tenantctl deliver`, docs/delivery.md) --
    delivery_url_hospitable: str | None = Field(default=None, description="Where accepted Hospitable events go.")
    delivery_url_whatsapp: str | None = Field(default=None, description="Where accepted WhatsApp events go.")
    delivery_url_nuki: str | None = Field(default=None, description="Where accepted Nuki events go.")
    delivery_url_beds24: str | None = Field(default=None, description="Where accepted Beds24 events go.")
    delivery_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Standard Webhooks signing secrets (whsec_...), comma-separated, newest first; each signs.",
    )
    delivery_max_attempts: int = Field(default=25, ge=1, le=1000, description="Attempts before dead-lettering.")
    delivery_max_age_s: float = Field(default=3 * 86400, gt=0, description="Age (s) after which retrying stops.")
    delivery_base_delay_s: float = Field(default=5.0, gt=0, description="First retry's backoff ceiling (s).")
    delivery_max_delay_s: float = Field(default=3600.0, gt=0, description="Largest backoff between tries (s).")
    delivery_timeout_s: float = Field(default=10.0, gt=0, le=300, description="One delivery attempt's timeout.")
    delivery_concurrency: int = Field(default=64, ge=1, le=256, description="Requests in flight per worker.")
    delivery_nice: int = Field(default=10, ge=0, le=19, description="The worker's CPU niceness (at least; "
                               "Linux nice): on a shared host the webhook server answering providers comes first.")
    delivery_poll_s: float = Field(default=0.25, gt=0, le=60, description="Pause between polls of an empty queue.")
    delivery_max_response_bytes: int = Field(default=65_536, ge=0, description="Response bytes read, at most.")
    delivery_allow_loopback_http: bool = Field(
        default=False, description="Allow http:// to loopback destinations (sandbox and development only)."
    )
    deliver_metrics_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="`deliver`: serve Prometheus /metrics on this port (0: a free one; empty: none); --metrics-port "
                    "overrides it.")
    deliver_metrics_addr: str = Field(default="127.0.0.1", min_length=1, description="`deliver`: the address "
                                      "of the metrics port; --metrics-addr overrides it.")
    sandbox_url: str = Field(default="http://127.0.0.1:8790", description="Where `tenantctl sandbox serve` listens.")

    # Failure behaviour of the webhook server (docs/operations.md).
    db_commit_timeout_s: float = Field(default=5.0, gt=0, description="A webhook-log commit running longer "
                                       "is abandoned: its batch gets 503 and its connection is dropped.")
    db_statement_timeout_ms: int = Field(default=5000, ge=0, description="PostgreSQL statement_timeout of "
                                         "the webhook server's and the delivery worker's connections (0: none).")
    db_queue_max: int = Field(default=2000, ge=1, description="Records waiting for a commit per worker "
                              "before new webhooks get 503 at once.")
    ready_timeout_s: float = Field(default=2.0, gt=0, description="/readyz's own deadline for its database check.")
    refusal_rows_per_minute: int = Field(default=20, ge=0, description="Rows per (tenant, provider, status, "
                                         "reason) and minute for refused requests; more are counted into one row.")
    request_timeout_s: float = Field(default=10.0, gt=0, description="Deadline to receive a request's headers "
                                     "and body (else 408).")
    forwarded_allow_ips: str = Field(default="127.0.0.1", description="Proxies (addresses or networks, "
                                     "comma-separated; * for any) whose X-Forwarded-For/X-Real-IP are believed.")
    log_format: str = Field(default="text", pattern="^(text|json)$", description="Server logs: text or json lines.")

    @field_validator("database_url")
    @classmethod
    def _psycopg(cls, v: str | None) -> str | None:
        # An empty DATABASE_URL (`.env.example`'s line, left as it is) is unset, not "SQLite": the settings source
        # stops at the first alias present, so TENANTCTL_DATABASE_URL (in the environment, `.env` loaded into it by
        # the CLI) is read here, or the server and the worker would silently run on a local file.
        v = (v or "").strip() or os.environ.get("TENANTCTL_DATABASE_URL", "").strip()
        # libpq's and Heroku's spellings (postgres://, postgresql://) name the one driver installed: psycopg 3.
        scheme, sep, rest = v.partition("://")
        if sep and scheme.lower() in ("postgres", "postgresql"):
            return f"postgresql+psycopg://{rest}"
        return v or None

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        # Empty leaves the admin pages off; a short token would fall to guessing (even rate-limited).
        n = len(v.get_secret_value()) if v is not None else 0
        if 0 < n < MIN_ADMIN_TOKEN:
            raise ValueError(f"TENANTCTL_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN} characters "
                             f"(it has {n}); generate one with: python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'")
        return v

    @field_validator("meta_app_secrets", "delivery_secrets", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("deliver_metrics_port", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        # `TENANTCTL_DELIVER_METRICS_PORT=` (an env file's empty line) means no metrics port, not an error.
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _delays_in_order(self) -> Settings:
        if self.delivery_max_delay_s < self.delivery_base_delay_s:
            raise ValueError(f"TENANTCTL_DELIVERY_MAX_DELAY_S ({self.delivery_max_delay_s:g}) is below "
                             f"TENANTCTL_DELIVERY_BASE_DELAY_S ({self.delivery_base_delay_s:g}): the largest pause "
                             "between tries cannot be shorter than the first; raise the one or lower the other")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'tenantctl.db'}"


# Settings read straight from the environment by the modules that use them (not through Settings), each
# listed in `.env.example` (tests/cli/test_settings.py compares the code with it).
ENV_ONLY = (
    "TENANTCTL_BIND", "TENANTCTL_WORKER_CLASS", "TENANTCTL_WORKERS", "TENANTCTL_WORKER_CONNECTIONS",
    "TENANTCTL_THREADS", "TENANTCTL_TIMEOUT", "TENANTCTL_GRACEFUL_TIMEOUT", "TENANTCTL_KEEPALIVE",
    "TENANTCTL_ACCESS_LOG", "TENANTCTL_FORWARDED_ALLOW_IPS",  # webhook_server/server_config, gunicorn.conf
    "TENANTCTL_FINGERPRINT_KEY",  # tenancy/fingerprint
    "TENANTCTL_SOPS_BINARY",  # tenancy/sops
    "TENANTCTL_TENANT_WORKERS", "TENANTCTL_RETRY_BASE_S", "TENANTCTL_RETRY_ATTEMPTS",  # reconciler/config
    "TENANTCTL_DEBUG",  # tenantctl/cli
    "TENANTCTL_HEALTH_URL",  # tenantctl/healthcheck (the container image's HEALTHCHECK)
    "TENANTCTL_SANDBOX_INPROCESS", "TENANTCTL_SANDBOX_FAULTS", "TENANTCTL_SANDBOX_LATENCY_S",
    "TENANTCTL_SANDBOX_STATE", "TENANTCTL_SPECS_DIR", "TENANTCTL_SANDBOX_WEBHOOK_TARGET",  # the sandbox
)


def load_dotenv(path: Path = Path(".env"), environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put PATH's settings into the process environment, below what is already set (as pydantic-settings
    ranks them), so every reader sees them: the modules reading os.environ, and the processes we start
    (`serve` becomes gunicorn, whose config reads TENANTCTL_BIND & co.). Returns the names it set."""
    env = os.environ if environ is None else environ
    if not path.is_file():
        return []
    added = []
    for name, value in dotenv_values(path).items():
        if value is not None and name not in env:
            env[name] = value
            added.append(name)
    if added:
        env[DOTENV_NAMES] = ",".join(sorted({*_from_dotenv(env), *added}))
    return added


# The names load_dotenv put into the environment (comma-separated), so reload_dotenv knows them from the
# real environment's, in this process and in those it starts.
DOTENV_NAMES = "DOTENV_NAMES_SET_BY_TENANTCTL"


def _from_dotenv(env: MutableMapping[str, str]) -> set[str]:
    return {n for n in env.get(DOTENV_NAMES, "").split(",") if n}


def reload_dotenv(path: Path = Path(".env"), environ: MutableMapping[str, str] | None = None) -> None:
    """PATH's settings again, as a restart would read them (the server's SIGHUP): the names load_dotenv
    set take their new values (or go, when no longer there), new names are added; the real environment
    still wins. Without it, a value load_dotenv copied into the environment hides PATH's new one for good
    (pydantic-settings ranks the environment first): a rotated secret would never apply."""
    env = os.environ if environ is None else environ
    values = dotenv_values(path) if path.is_file() else {}
    kept: set[str] = set()
    for name in _from_dotenv(env):
        value = values.get(name)
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
            kept.add(name)
    env[DOTENV_NAMES] = ",".join(sorted(kept))
    load_dotenv(path, env)  # the names new in PATH, recorded with these


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


# pydantic's error types → plain words ({…} from the error's context).
_PLAIN = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false (1/0, yes/no, on/off)",
    "string_pattern_mismatch": "must match {pattern}",
    "missing": "is required",
}


def env_names(field: str) -> tuple[str, ...]:
    """The environment variables a Settings field is read from (DATABASE_URL has two)."""
    f = Settings.model_fields.get(field)
    choices = getattr(f.validation_alias, "choices", None) if f is not None else None
    return tuple(str(c) for c in choices) if choices else (f"TENANTCTL_{field.upper()}",)


def _is_secret(field: str) -> bool:
    f = Settings.model_fields.get(field)
    return f is None or "SecretStr" in repr(f.annotation) or field == "database_url"  # a URL carries its password


def describe_error(err: ValidationError, environ: MutableMapping[str, str] | None = None) -> str:
    """A Settings ValidationError as an operator reads it: per problem, the environment variable, what is wrong
    in plain words and where the value came from (the .env file or the environment); no pydantic URL, and the
    value only of a setting that is not a secret."""
    env = os.environ if environ is None else environ
    from_dotenv = _from_dotenv(env)
    lines = []
    for e in err.errors(include_url=False, include_input=False):
        field = str(e["loc"][0]) if e["loc"] else ""
        if not field:  # a rule across settings: its message names them
            lines.append(str(e.get("ctx", {}).get("error", e["msg"])))
            continue
        names = env_names(field)
        name = next((n for n in names if n in env), names[0])
        ctx = e.get("ctx") or {}
        if e["type"] == "value_error" and "error" in ctx:
            words = str(ctx["error"]).removeprefix(f"{name} ")
        else:
            template = _PLAIN.get(e["type"])
            words = template.format(**ctx) if template else str(e["msg"]).lower()
            if e["type"] == "string_pattern_mismatch" and field == "log_format":
                words = "must be text or json"
        if name in from_dotenv:
            where = " (set in the .env file)"
        elif name in env:
            where = " (set in the environment)"
        else:
            where = ""
        value = "" if _is_secret(field) or name not in env else f", not {env[name].strip()[:60]!r}"
        lines.append(f"{name}{where} {words}{value}")
    return "bad setting: " + "; ".join(lines) + ". Fix it where it is set (see .env.example for every setting)."
