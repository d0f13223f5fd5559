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
    metrics_store_ttl_s: float = Field(default=15.0, ge=0,
                                       description="/metrics reads health and last events from the database at "
                                                   "most this often (seconds).")
    sandbox: bool = Field(default=False, description="Point every provider at the local sandbox.")
    sandbox_url: str = Field(default="http://127.0.0.1:8790", description="Where `tenantctl sandbox serve` listens.")

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
