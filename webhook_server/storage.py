"""The read side the app needs from the database: a readiness ping and the admin log query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from store.errors import DatabaseUnavailable
from store.webhook_log import LogRow, Outcome, query_log


class LogReader(Protocol):
    """Reads for operators. ``ping`` raises DatabaseUnavailable when the database cannot answer;
    ``query`` returns rows newest first and the cursor of the next page (None when none)."""

    def ping(self) -> None: ...

    def query(self, *, tenant: str | None, provider: str | None, outcome: Outcome | None,
              since: datetime | None, until: datetime | None, limit: int,
              cursor: int | None, states: Sequence[str] = ()) -> tuple[list[LogRow], int | None]: ...


class EngineLogReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"database unreachable: {type(e).__name__}") from None

    def query(self, *, tenant: str | None, provider: str | None, outcome: Outcome | None,
              since: datetime | None, until: datetime | None, limit: int,
              cursor: int | None, states: Sequence[str] = ()) -> tuple[list[LogRow], int | None]:
        try:
            return query_log(self.engine, tenant=tenant, provider=provider, outcome=outcome, since=since,
                             until=until, limit=limit, cursor=cursor, states=states)
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"database unreachable: {type(e).__name__}") from None
