"""What the app does differently under gunicorn's gevent worker (monkey-patched threads and sockets).

The group-commit store needs nothing for PostgreSQL: psycopg waits through the patched ``select``
(gunicorn.conf.py chooses its wait function), so a commit in flight yields to the other requests. SQLite's
calls are blocking C calls, and its fsync would freeze the worker's event loop; they run in one native
thread instead, and only the writer greenlet waits for it.
"""

from __future__ import annotations

import sys
from typing import Any

from store.webhook_log import CommitFn, CommitRunner, RecordResult, WebhookRecord


def gevent_patched() -> bool:
    """True in a gevent worker (gunicorn patches before it loads the app)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def native_thread_runner() -> CommitRunner:
    """Run each commit in one dedicated native thread; the calling greenlet waits, the others run.

    One thread, not the hub's shared pool: the writer's SQLite connection then always lives on the same
    thread, and DNS lookups (which gevent also sends to the hub's pool) never queue behind a commit.
    """
    from gevent.threadpool import ThreadPool  # type: ignore[import-untyped]

    pool: Any = ThreadPool(1)

    def run(commit: CommitFn, records: list[WebhookRecord]) -> list[RecordResult]:
        result: list[RecordResult] = pool.apply(commit, (records,))
        return result

    return run
