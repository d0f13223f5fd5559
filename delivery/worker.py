"""The delivery worker: claim due events, POST each to its destination, record the outcome, repeat.

At least once: an event leaves the queue only when the platform answered 2xx (state ``delivered``) or
the retry policy gave up (``dead``, replayable). A worker that dies mid-batch leaves its claims to expire
(the lease), after which any worker delivers them again; ``webhook-id`` stays the same, so the platform
de-duplicates. No order is guaranteed (docs/delivery.md, "Ordering"): a batch is sent concurrently, and
an event that fails does not hold back later ones; every request carries the event's receive time.

Up to ``concurrency`` attempts run at once, as tasks of one asyncio loop (outbound/sender.py). The database
is used in rounds, one at a time, on a thread of their own: a round records every outcome that came in
since the last one and claims as many events as there are free slots, in one transaction. On SQLite the loop
is parked while a round holds the write lock (delivery/loop_park.py), and the round's thread keeps the priority
the process was given while the loop's runs at TENANTCTL_DELIVERY_NICE: the server's commits wait for that
lock. The busier the worker, the more each commit carries (a group commit), and no attempt waits for the
database. A claimed event's attempt starts as its round returns: the lease covers the slowest possible attempt
(connect + read deadline) plus a margin, and no other worker can claim an event while its attempt may
still be running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from urllib.parse import quote

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from delivery import signing
from delivery.dbthread import DaemonThreadExecutor
from delivery.destinations import Destinations
from delivery.loop_park import LoopParker
from delivery.metrics import DeliveryMetrics
from delivery.retry import RetryPolicy, is_success, next_attempt
from outbound.policy import OutboundBlocked, OutboundPolicy
from outbound.retry_after import parse_retry_after
from outbound.sender import PostSender, SendFailed, SendTimeout
from store.delivery import AttemptOutcome, Claimed, Finished, cycle
from store.engine import is_sqlite
from store.errors import short_error

log = logging.getLogger(__name__)

USER_AGENT = "tenantctl-delivery/1"
NO_DESTINATION_RETRY = timedelta(minutes=5)
# A busy worker's rounds wait for a quarter of its slots' outcomes, or this long: fewer, fuller commits.
ROUND_INTERVAL_S = 0.02
# A round without an answer this long is reported (again every as long), and after SIGTERM it is waited for no
# longer: a database server that hangs never ends it, and its statement_timeout is the server's own.
ROUND_STUCK_S = 10.0
# After SIGTERM, a round that failed (a lock held elsewhere) is retried until this long after the signal, so the
# outcomes in hand are recorded rather than delivered again after their lease; then the worker stops all the same.
# Longer than SQLite's busy_timeout (5 s), or the first failed round would end it; give the service a stop timeout
# above it plus one round (systemd unit: 30 s).
STOP_RETRY_S = 8.0
# Errors of what a round writes, not of the database: retrying the same round fails the same way. Its outcomes are
# then recorded one a round, and one that still fails is dropped (its event is delivered again after its lease).
INCURABLE = (IntegrityError, DataError)


@dataclass(frozen=True)
class WorkerConfig:
    policy: OutboundPolicy
    retry: RetryPolicy
    keys: list[bytes]  # signing keys, newest first
    concurrency: int = 16
    poll_s: float = 0.25
    lease_margin_s: float = 5.0

    @property
    def lease(self) -> timedelta:
        """How long a claim holds: the slowest possible attempt, and a margin for recording it."""
        return timedelta(seconds=self.policy.connect_timeout_s + self.policy.timeout_s + self.lease_margin_s)


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def header_safe(value: str) -> str:
    """Outside text (a provider's event ID) made safe for a header: printable ASCII, the rest %-encoded."""
    if value.isascii() and value.isprintable() and " " not in value and "%" not in value:
        return value[:512]  # the usual ID, kept as is without a pass per character
    return "".join(ch if 0x20 < ord(ch) < 0x7F and ch != "%" else quote(ch, safe="") for ch in value)[:512]


def message_id(item: Claimed) -> str:
    """The ``webhook-id``: the event's row, so it is the same on every retry and replay."""
    return f"msg_{item.id}"


def build_request(item: Claimed, keys: list[bytes], timestamp: int) -> tuple[bytes, dict[str, str]]:
    """The body (as received, byte for byte) and the headers of one attempt."""
    body = item.body.encode("utf-8")
    msg_id = message_id(item)
    headers = {
        "content-type": item.headers.get("content-type") or "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.sign(keys, msg_id, timestamp, body),
        "x-tenantctl-provider": item.provider,
        "x-tenantctl-received-at": item.received_at.isoformat(timespec="microseconds"),
        "x-tenantctl-attempt": str(item.attempt),
    }
    if item.tenant is not None:
        headers["x-tenantctl-tenant"] = item.tenant
    if item.event_id is not None:
        headers["x-tenantctl-event-id"] = header_safe(item.event_id)
    return body, headers


class Worker:
    """Delivers with ``sender`` (an :class:`outbound.sender.Sender`, or the tests' scripted platform)."""

    def __init__(self, engine: Engine, destinations: Destinations, config: WorkerConfig, sender: PostSender, *,
                 metrics: DeliveryMetrics | None = None, worker_id: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 jitter: Callable[[], float] = random.random) -> None:
        self.engine = engine
        self.destinations = destinations
        self.config = config
        self.sender = sender
        self.metrics = metrics or DeliveryMetrics()
        self.worker_id = worker_id or default_worker_id()
        self._now, self._jitter = now, jitter
        self._db = DaemonThreadExecutor("deliver-db")
        self._parker: LoopParker | None = None  # SQLite: set by the loop (see delivery/loop_park.py)
        self._abandoned = False  # a stuck round was left behind on stop: never join its thread
        # Claim tokens: unique per process (a restarted container may reuse the pid) and cheap per round.
        self._nonce = uuid.uuid4().hex[:8]
        self._claims = 0
        self.delivered = 0  # counters for the worker's own log line and tests
        self.failed = 0
        self.dead = 0  # failed attempts that dead-lettered their event
        self.rounds = 0  # database rounds (each records outcomes and claims in one transaction)

    def close(self, *, wait: bool = True) -> None:
        """Stop the database thread; ``wait=False`` leaves a round in progress behind (a stop at once: the process
        ends, its transaction is rolled back, and the round's claims wait out their lease)."""
        self._db.shutdown(wait=wait and not self._abandoned)

    def reconfigure(self, destinations: Destinations, policy: OutboundPolicy) -> None:
        """New destinations and outbound rules (SIGHUP); attempts in flight finish under the old ones."""
        self.config = replace(self.config, policy=policy)
        self.sender.policy = policy
        self.destinations = destinations

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, until_idle: bool = False) -> None:
        """Deliver until ``stop`` is set (or, with ``until_idle``, until nothing is due or in flight).

        On ``stop`` no more is claimed and the attempts in flight are finished and recorded. A database
        error is logged and the round retried after a growing pause (up to 10 s): the worker recovers
        without a restart, and outcomes not yet recorded are kept until they are.
        """
        asyncio.run(self._run(stop, until_idle))

    async def _run(self, stop: threading.Event, until_idle: bool) -> None:
        try:
            await self._loop(stop, until_idle)
        finally:
            await self.sender.close()

    async def _loop(self, stop: threading.Event, until_idle: bool) -> None:
        # Event-driven: attempts and rounds report through callbacks that set ``wake``, so a loop turn costs
        # the same with 1 or 256 attempts in flight (asyncio.wait would re-arm every pending future per turn).
        loop = asyncio.get_running_loop()
        self._parker = LoopParker(loop) if is_sqlite(self.engine) else None
        cfg = self.config
        wake = asyncio.Event()
        in_flight: set[asyncio.Task[Finished]] = set()
        ready: deque[tuple[float, Claimed]] = deque()  # claimed, waiting for a free slot (claim time)
        done: list[Finished] = []  # outcomes not yet recorded
        released: list[Claimed] = []  # claims never started, to hand back
        releasing: list[Claimed] = []  # those the round in progress hands back
        unstarted: list[Claimed] = []  # claims of a round too slow to start them: left to their lease, uncounted
        leaving: list[Claimed] = []  # those the round in progress leaves to their lease
        db_round: asyncio.Future[list[Claimed]] | None = None
        recording: list[Finished] = []  # the outcomes the round in progress records
        alone = 0  # the next this many outcomes are recorded one a round (a round failed on what it wrote)
        pause = cfg.poll_s
        failed_rounds = 0  # rounds failed in a row on the database (not on what they wrote), for the recovery line
        claim_after = 0.0  # monotonic: an empty or failed claim waits for the next poll (or pause)
        last_round = 0.0
        stuck_reported = 0.0  # monotonic: when a stuck round was last reported
        stop_seen: float | None = None
        # The most one round claims: halved when a round was too slow to start its events inside their lease
        # (large bodies: SQLite rewrites a whole row, body included, to claim it), grown back a step at a time.
        claim_cap = 2 * cfg.concurrency
        asked, queue_empty = 0, False
        batch = max(1, cfg.concurrency // 4)

        def attempt_done(task: asyncio.Task[Finished]) -> None:
            in_flight.discard(task)
            if task.cancelled():  # a stop at once (tenantctl deliver): no outcome, its event waits out its lease
                return
            done.append(task.result())
            wake.set()

        while True:
            stopping = stop.is_set()
            now = time.monotonic()
            if stopping and stop_seen is None:
                stop_seen = now
                if in_flight:
                    log.warning("delivery: stopping: finishing %d attempt(s) in flight (up to %.0fs)", len(in_flight),
                                cfg.policy.connect_timeout_s + cfg.policy.timeout_s)
            if stopping and ready:
                # Stopping finishes the attempts in flight and starts none: those claimed ahead are handed back, due
                # at once for the next worker rather than after their lease.
                released.extend(item for _, item in ready)
                ready.clear()
            while ready and len(in_flight) < cfg.concurrency:
                claimed_at, item = ready.popleft()
                if now - claimed_at > cfg.lease_margin_s / 2:
                    # Too late to start inside its lease, having waited for a slot (a slow platform): handed back,
                    # due now and its attempt uncounted, rather than counted and held back for a whole lease.
                    released.append(item)
                    continue
                task = loop.create_task(self._attempt_safely(item))
                in_flight.add(task)
                task.add_done_callback(attempt_done)
            # Claim ahead up to twice the concurrency, so a slot that frees starts its next event at once.
            want = 0 if stopping or now < claim_after else min(
                claim_cap, 2 * cfg.concurrency - len(in_flight) - len(ready))
            if db_round is None and (done or released or unstarted or want > 0) and (
                    len(done) >= batch or want >= batch or now - last_round >= ROUND_INTERVAL_S
                    or not in_flight):
                take = 1 if alone else len(done)
                recording, done = done[:take], done[take:]
                releasing, released = released, []
                leaving, unstarted = unstarted, []
                self._claims += 1
                self.rounds += 1
                claim = f"{self.worker_id}:{self._nonce}:{self._claims}"[-64:]
                asked, last_round = want, now
                db_round = loop.run_in_executor(self._db, partial(
                    self._cycle, recording, claim=claim, limit=asked, providers=self.destinations.providers(),
                    released=releasing, unstarted=leaving))
                db_round.add_done_callback(lambda _: wake.set())
            if db_round is None and not in_flight and not ready:
                if stopping or (until_idle and queue_empty and not done and not released and not unstarted):
                    return
                await asyncio.sleep(max(0.0, min(cfg.poll_s, claim_after - time.monotonic())))
                continue
            if db_round is not None and not db_round.done() and now - last_round >= ROUND_STUCK_S:
                if now - stuck_reported >= ROUND_STUCK_S:
                    stuck_reported = now
                    log.error("delivery: a database round has had no answer for %.0fs (is the database stuck?); "
                              "%d outcome(s) wait to be recorded", now - last_round, len(recording) + len(done))
                if stop_seen is not None and not in_flight and now - stop_seen >= ROUND_STUCK_S:
                    self._abandoned = True
                    log.error("delivery: stopping without the stuck database round; %d outcome(s) unrecorded: "
                              "their events are delivered again after their lease", len(recording) + len(done))
                    return
            if not (db_round is not None and db_round.done()):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(cfg.poll_s if db_round is not None else ROUND_INTERVAL_S):
                        await wake.wait()
            wake.clear()
            if db_round is None or not db_round.done():
                continue
            finished, db_round = db_round, None
            try:
                items: list[Claimed] = finished.result()
            except SQLAlchemyError as exc:
                released = releasing + released
                unstarted = leaving + unstarted
                if isinstance(exc, INCURABLE) and recording:
                    if len(recording) > 1:  # which one? each in a round of its own
                        log.error("delivery: a round failed on what it records (%s); recording its %d outcome(s) "
                                  "one at a time", type(exc).__name__, len(recording))
                        done, alone = recording + done, len(recording)
                    else:
                        [r] = recording
                        log.error("delivery: the outcome of event %d attempt %d cannot be recorded (%s), dropped: the "
                                  "event is delivered again after its lease", r.item.id, r.item.attempt,
                                  type(exc).__name__)
                        self._observe(r)  # the attempt was made all the same
                        alone = max(0, alone - 1)
                    recording = []
                    continue
                done = recording + done
                if stopping and not in_flight and (stop_seen is None or time.monotonic() - stop_seen >= STOP_RETRY_S):
                    log.error("delivery: database error while stopping (%s); %d outcome(s) unrecorded: "
                              "their events are delivered again after their lease", short_error(exc), len(done))
                    return
                if stop_seen is not None:  # stopping: retry only within the stop's bound
                    pause = max(0.0, min(pause, stop_seen + STOP_RETRY_S - time.monotonic()))
                failed_rounds += 1
                log.error("delivery: database error, retrying in %.1fs: %s", pause, short_error(exc))
                claim_after = time.monotonic() + pause
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
                continue
            pause = cfg.poll_s
            if failed_rounds:
                log.info("delivery: database reachable again after %d failed round(s)", failed_rounds)
                failed_rounds = 0
            if stuck_reported >= last_round:  # this round was reported stuck: say that it ended
                log.info("delivery: the database answered again: a round took %.0fs",
                         time.monotonic() - last_round)
            if alone and recording:
                alone -= 1
            for r in recording:
                self._observe(r)
            recording = []
            # Their lease runs from before the round (its clock was read before any wait for a lock). A round too
            # slow to start them inside it leaves them to their lease: handing them back due at once would only make
            # a slow database claim them again at once, and again. The next round uncounts their attempt (never
            # started), so the first one made is attempt 1 and none of the limit is spent on the database's pace.
            took = time.monotonic() - last_round
            if took <= cfg.lease_margin_s / 2:
                ready.extend((last_round, item) for item in items)
                if took < cfg.lease_margin_s / 4 and asked == claim_cap == len(items):
                    claim_cap = min(2 * cfg.concurrency, claim_cap + batch)
            elif items:
                unstarted.extend(items)
                claim_cap = max(1, len(items) // 2)
                log.warning("delivery: a database round took %.1fs, too long to start its %d event(s) inside their "
                            "lease (they are due again when it ends); claiming at most %d at a time",
                            took, len(items), claim_cap)
            if asked:
                queue_empty = len(items) < asked
                if queue_empty:
                    claim_after = time.monotonic() + cfg.poll_s

    def _cycle(self, results: list[Finished], *, claim: str, limit: int, providers: tuple[str, ...],
               released: list[Claimed], unstarted: list[Claimed]) -> list[Claimed]:
        return cycle(self.engine, results, claim=claim, now=self._now(), lease=self.config.lease, limit=limit,
                     providers=providers, released=released, unstarted=unstarted,
                     hold_still=self._parker.hold if self._parker is not None else contextlib.nullcontext)

    # -- one attempt ----------------------------------------------------------------------------------
    async def _attempt_safely(self, item: Claimed) -> Finished:
        """An attempt whose unexpected error (a bug) is recorded as the attempt's error, not the worker's end."""
        try:
            return await self._attempt(item)
        except Exception as exc:
            log.exception("delivery of event %d: unexpected error", item.id)
            return self._failed(item, self._now(), None, None, f"internal error: {type(exc).__name__}")

    async def _attempt(self, item: Claimed) -> Finished:
        started_at = self._now()
        url = self.destinations.url_for(item.tenant, item.provider)
        if url is None:
            return self._failed(item, started_at, None, None, f"no delivery URL for {item.tenant}/{item.provider}",
                                retry_at=started_at + NO_DESTINATION_RETRY)
        body, headers = build_request(item, self.config.keys, int(started_at.timestamp()))
        began = time.monotonic()
        try:
            answer = await self.sender.post(url, content=body, headers=headers)
        except OutboundBlocked as exc:
            return self._failed(item, started_at, None, None, f"blocked: {exc}")
        except SendTimeout:
            return self._failed(item, started_at, None, _ms(began), "timeout")
        except SendFailed as exc:  # what failed and where, in the sender's words (never the platform's)
            return self._failed(item, started_at, None, _ms(began), str(exc))
        latency = round(answer.elapsed_s * 1000, 3)
        self.metrics.latency.labels(item.provider).observe(answer.elapsed_s)
        if is_success(answer.status):
            done = self._now()
            return Finished(item, started_at, self.worker_id, "delivered", answer.status, latency, None,
                            "delivered", None, done)
        redirect = 300 <= answer.status < 400
        error = f"HTTP {answer.status}" + (": redirect refused" if redirect else "")
        retry_after = parse_retry_after(answer.headers.get("retry-after"), self._now()) \
            if answer.status in (429, 503) else None
        return self._failed(item, started_at, answer.status, latency, error, retry_after_s=retry_after)

    def _failed(self, item: Claimed, started_at: datetime, status: int | None, latency_ms: float | None,
                error: str, *, retry_after_s: float | None = None, retry_at: datetime | None = None) -> Finished:
        now = self._now()
        at = retry_at or next_attempt(attempt=item.attempt, queued_at=item.replayed_at or item.received_at, now=now,
                                      retry_after_s=retry_after_s, policy=self.config.retry, jitter=self._jitter())
        if retry_at is not None and item.attempt >= self.config.retry.max_attempts:
            at = None
        outcome: AttemptOutcome = "failed" if status is not None else "error"
        return Finished(item, started_at, self.worker_id, outcome, status, latency_ms, error,
                        "retrying" if at is not None else "dead", at, None)

    def _observe(self, r: Finished) -> None:
        provider = r.item.provider
        self.metrics.attempts.labels(provider, r.outcome).inc()
        if r.state == "delivered" and r.delivered_at is not None:
            self.delivered += 1
            self.metrics.lag.labels(provider).observe(
                max(0.0, (r.delivered_at - r.item.received_at).total_seconds()))
        else:
            self.failed += 1
            log.warning("delivery of event %d (%s/%s) attempt %d: %s%s", r.item.id, r.item.tenant or "-",
                        provider, r.item.attempt, r.error, "; dead-lettered" if r.state == "dead" else "")
        if r.state == "dead":
            self.dead += 1
            self.metrics.dead.labels(provider).inc()


def _ms(began: float) -> float:
    return round((time.monotonic() - began) * 1000, 3)


def load_keys(secrets: Sequence[str]) -> list[bytes]:
    """Signing keys from ``whsec_`` secrets, newest first; raises signing.BadSecret."""
    return [signing.secret_key(s) for s in secrets]
