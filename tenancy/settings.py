"""Platform settings from the environment (prefix TENANTCTL_) and `.env`; see `.env.example`.

Per-platform secrets live here, not in tenant files: the Meta app secret signs every tenant's WhatsApp
webhooks, so it belongs to the platform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENANTCTL_", env_file=".env", extra="ignore")

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
    admin_token: SecretStr | None = Field(default=None, description="Bearer token for /admin endpoints.")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest webhook body accepted.")
    stored_body_bytes: int = Field(default=65_536, ge=0, description="Largest body kept in the webhook log.")
    sandbox: bool = Field(default=False, description="Point every provider at the local sandbox.")
    sandbox_url: str = Field(default="http://127.0.0.1:8790", description="Where `tenantctl sandbox serve` listens.")

    # Failure behaviour of the webhook server (docs/operations.md).
    db_commit_timeout_s: float = Field(default=5.0, gt=0, description="A webhook-log commit running longer "
                                       "is abandoned: its batch gets 503 and its connection is dropped.")
    db_statement_timeout_ms: int = Field(default=5000, ge=0, description="PostgreSQL statement_timeout of "
                                         "the webhook server's connections (0: none).")
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

    @field_validator("meta_app_secrets", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'tenantctl.db'}"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
