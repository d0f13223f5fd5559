"""The Integrations page's gate, through the Falcon app: login form, signed cookie, bearer token, 404 when no
token is configured; a refusal's reason explained in words; outside text escaped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import falcon.testing
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from store import health as store_health
from store import migrate
from store.engine import make_engine
from store.webhook_log import DirectEventStore, WebhookRecord
from tenancy.settings import Settings
from tests.conftest import PgSchemas
from tests.webhook_server.helpers import FakeStore, FixedClock, tenants
from tests.webhook_server.tcp_proxy import TcpProxy, behind_proxy
from webhook_server.admin import resources as admin_resources
from webhook_server.app import create_app
from webhook_server.routing import build_routing
from webhook_server.storage import EngineLogReader

TOKEN = "page-admin-token-0123456789"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    e = make_engine(url)
    yield e
    e.dispose()


def _client(engine: Engine, token: str | None = TOKEN) -> falcon.testing.TestClient:
    s = Settings(_env_file=None, admin_token=SecretStr(token) if token else None)  # type: ignore[call-arg]
    app = create_app(build_routing(tenants()), FakeStore(), s, FixedClock(), reader=EngineLogReader(engine))
    return falcon.testing.TestClient(app)


def _login(c: falcon.testing.TestClient) -> str:
    r = c.simulate_post("/admin/login", body=f"token={TOKEN}",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"].endswith("/admin/")
    cookie = r.cookies["tenantctl_admin"]
    assert cookie.secure and cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/admin"
    return str(cookie.value)


def test_pages_need_a_login_and_the_form_sets_a_secure_cookie(engine: Engine) -> None:
    c = _client(engine)
    for path in ("/admin/", "/admin/logs", "/admin/tenants/acme"):
        r = c.simulate_get(path)
        assert (r.status_code, r.headers.get("location", "").endswith("/admin/login")) == (303, True)
    cookie = _login(c)
    page = c.simulate_get("/admin/", cookies={"tenantctl_admin": cookie})
    assert page.status_code == 200 and "<h1>Integrations</h1>" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    forged = cookie.split(".")[0] + "." + "0" * 64
    assert c.simulate_get("/admin/", cookies={"tenantctl_admin": forged}).status_code == 303


def test_a_wrong_token_is_refused_and_the_bearer_header_works(engine: Engine) -> None:
    c = _client(engine)
    r = c.simulate_post("/admin/login", body="token=guess",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401 and "not the admin token" in r.text and "tenantctl_admin" not in r.cookies
    assert c.simulate_get("/admin/logs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_wrong_bearer_tokens_count_with_wrong_logins_and_are_refused_after_the_limit(engine: Engine) -> None:
    """A wrong Bearer token is a 401 (not a redirect to the form: a script cannot use one); ten wrong
    tokens from one address, by header or form, and the next try gets 429 with Retry-After, even the
    right token, until the window ends."""
    c = _client(engine)
    wrong = c.simulate_get("/admin/logs", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    for _ in range(4):
        c.simulate_post("/admin/login", body="token=guess",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    for _ in range(5):
        assert c.simulate_get("/admin/", headers={"Authorization": "Bearer guess"}).status_code == 401
    refused = c.simulate_get("/admin/logs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert c.simulate_post("/admin/login", body=f"token={TOKEN}",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 429


def test_without_an_admin_token_the_pages_do_not_exist(engine: Engine) -> None:
    c = _client(engine, token=None)
    assert c.simulate_get("/admin/").status_code == 404
    assert c.simulate_get("/admin/login").status_code == 404


def test_the_log_explains_refusals_filters_pages_and_escapes(engine: Engine) -> None:
    store = DirectEventStore(engine)
    now = datetime.now(UTC)
    for i in range(60):
        store.record(WebhookRecord(now - timedelta(minutes=i), "acme", "hospitable", "rejected", 401,
                                   reason="bad-signature"))
    store.record(WebhookRecord(now, "acme", "hospitable", "accepted", 200, event_id="<script>x</script>"))
    c = _client(engine)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = c.simulate_get("/admin/logs", params={"outcome": "rejected", "reason": "bad-sig"}, headers=auth)
    assert page.text.count('<tr class="rejected">') == 50 and '<tr class="accepted">' not in page.text
    assert "signature did not match: check the secret pasted at the provider" in page.text
    assert 'rel="next"' in page.text
    older = page.text.split('href="')[-1].split('" rel="next"')[0].replace("&amp;", "&")
    second = c.simulate_get(older.split("?")[0], query_string=older.split("?")[1], headers=auth)
    assert second.text.count('<tr class="rejected">') == 10 and 'rel="next"' not in second.text
    everything = c.simulate_get("/admin/logs", headers=auth).text
    assert "<script>x</script>" not in everything and "&lt;script&gt;x&lt;/script&gt;" in everything
    bad = c.simulate_get("/admin/logs", params={"since": "yesterday"}, headers=auth)
    assert bad.status_code == 400 and "since: use a date and time" in bad.text


def test_a_tenant_page_shows_the_last_health_run_and_the_onboarding_checklist(engine: Engine) -> None:
    now = datetime.now(UTC)
    store_health.record_run(engine, [
        store_health.HealthResult("acme", "hospitable", "hospitable.webhook[acme]", "progressing", "out of sync",
                                  "a manual step is not done yet", "add the webhook", 1.0, now, "onboarding"),
        store_health.HealthResult("acme", "nuki", "nuki.token[acme]", "healthy", None, "ok", "", 2.0, now,
                                  "onboarding")])
    c = _client(engine)
    page = c.simulate_get("/admin/tenants/acme", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "hospitable.webhook[acme]" in page and "add the webhook" in page
    assert "Onboarding checklist" in page
    assert "✔ done: Nuki locks listed and teammates&#39; codes in sync" in page
    assert "☐ to do: Hospitable API key answers and its webhook delivers" in page
    assert c.simulate_get("/admin/tenants/nobody", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def _queued(engine: Engine, tenant: str, provider: str, n: int, *, age: timedelta, state: str = "pending") -> None:
    """n accepted events received `age` ago, in delivery state `state` (the worker's doing, set directly here)."""
    from sqlalchemy import update

    from store.schema import webhook_log

    store = DirectEventStore(engine)
    for i in range(n):
        store.record(WebhookRecord(datetime.now(UTC) - age, tenant, provider, "accepted", 200,
                                   event_id=f"{provider}-{state}-{age.total_seconds()}-{i}", body="{}", body_size=2))
    with engine.begin() as conn:
        conn.execute(update(webhook_log).where(webhook_log.c.event_id.like(f"{provider}-{state}-%"))
                     .values(delivery_state=state))


def _card(page: str, tenant: str, provider: str) -> str:
    section = page.split(f'aria-labelledby="t-{tenant}"', 1)[1].split("</section>", 1)[0]
    return " ".join(section.split(f'aria-label="{provider}"', 1)[1].split("</article>", 1)[0].split())


def test_each_integration_card_shows_its_delivery_queue_and_how_long_the_oldest_event_waits(engine: Engine) -> None:
    """Per tenant and provider, from the webhook log: pending, retrying and dead counts, and the wait of the oldest
    event not yet delivered; a provider with nothing queued says 0, and one whose events are all old still gets
    its card (its events wait, whatever their age)."""
    _queued(engine, "acme", "hospitable", 3, age=timedelta(minutes=20))
    _queued(engine, "acme", "hospitable", 1, age=timedelta(minutes=50), state="retrying")
    _queued(engine, "acme", "hospitable", 2, age=timedelta(hours=3), state="dead")
    _queued(engine, "acme", "whatsapp", 1, age=timedelta(seconds=30), state="delivered")
    _queued(engine, "acme", "beds24", 1, age=timedelta(days=3))
    page = _client(engine).simulate_get("/admin/", headers={"Authorization": f"Bearer {TOKEN}"}).text
    hospitable = _card(page, "acme", "hospitable")
    assert ('Delivery queue: <strong class="pending">3</strong> pending, <strong class="retrying">1</strong> '
            'retrying, <strong class="dead">2</strong> dead') in hospitable
    assert 'oldest waiting: <span class="oldest">50 min</span>' in hospitable
    whatsapp = _card(page, "acme", "whatsapp")
    assert ('<strong class="pending">0</strong> pending, <strong class="retrying">0</strong> retrying, '
            '<strong class="dead">0</strong> dead') in whatsapp and "oldest waiting" not in whatsapp
    assert 'oldest waiting: <span class="oldest">3.0 d</span>' in _card(page, "acme", "beds24")


def test_an_unreadable_delivery_queue_is_said_on_the_page_not_shown_as_zero(engine: Engine,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    """The queue's read fails (here its index is gone, so SQLite cannot run it) while the rest of the
    page can be read: each card says the queue could not be read, and shows no count for it."""
    _queued(engine, "acme", "hospitable", 2, age=timedelta(minutes=5))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_webhook_log_queue")
    r = _client(engine).simulate_get("/admin/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    card = _card(r.text, "acme", "hospitable")
    assert "Delivery queue: could not be read from the database (see the server log)" in card
    assert "pending" not in card and "24 h: 2 accepted, 0 rejected" in card  # the rest of the card is there
    assert "Integrations page: delivery queue not readable: OperationalError: no such index" in caplog.text


def test_the_page_reads_the_delivery_queue_of_only_the_tenants_it_shows(engine: Engine,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A page of tenants reads their queue, from their ranges of the queue's index, not every tenant's queue: on a
    large queue that read held the gevent worker (and /healthz, and webhooks on it) for half a second."""
    from sqlalchemy import event

    from webhook_server.admin import resources

    monkeypatch.setattr(resources, "TENANTS_PER_PAGE", 1)
    _queued(engine, "acme", "hospitable", 2, age=timedelta(minutes=5))
    _queued(engine, "blue-harbor", "whatsapp", 3, age=timedelta(minutes=5))
    reads: list[tuple[str, object]] = []

    def seen(_conn: object, _cursor: object, sql: str, params: object, *_: object) -> None:
        if "GROUP BY tenant, provider" in sql:  # the queue's counts (store/queue_depth.py)
            reads.append((sql, params))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        page = _client(engine).simulate_get("/admin/", headers={"Authorization": f"Bearer {TOKEN}"}).text
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert "Page 1 of" in page and '<strong class="pending">2</strong> pending' in _card(page, "acme", "hospitable")
    [(sql, params)] = reads
    assert "tenant IN (?)" in sql and params == ("acme",)


def test_a_tenant_no_file_routes_any_more_is_shown_with_its_queue_marked_not_in_the_tenant_files(
        engine: Engine) -> None:
    """A removed or renamed tenant whose events still wait or died in the queue (the dead-letter alert counts
    them) has its cards on the overview and its own page, marked as not in the tenant files; a tenant without
    queue, health results or routing is still not found."""
    _queued(engine, "old-name", "hospitable", 1, age=timedelta(hours=2), state="dead")
    _queued(engine, "old-name", "whatsapp", 1, age=timedelta(minutes=10), state="retrying")
    c = _client(engine)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = c.simulate_get("/admin/", headers=auth).text
    section = page.split('aria-labelledby="t-old-name"', 1)[1].split("</section>", 1)[0]
    assert "not in the tenant files" in section and 'href="/admin/logs?tenant=old-name"' in section
    assert ('<strong class="pending">0</strong> pending, <strong class="retrying">0</strong> retrying, '
            '<strong class="dead">1</strong> dead') in _card(page, "old-name", "hospitable")
    assert 'oldest waiting: <span class="oldest">10 min</span>' in _card(page, "old-name", "whatsapp")
    acme = page.split('aria-labelledby="t-acme"', 1)[1].split("</section>", 1)[0]
    assert "not in the tenant files" not in acme  # routed tenants are not marked
    own = c.simulate_get("/admin/tenants/old-name", headers=auth)
    assert own.status_code == 200 and "not in the tenant files" in own.text
    assert c.simulate_get("/admin/tenants/never-was", headers=auth).status_code == 404


def test_the_log_page_filters_by_delivery_state_and_shows_it(engine: Engine) -> None:
    """The Webhook Logs page has the delivery-state filter `webhooks log --state` and the JSON API have, and shows
    each event's state as `webhooks log` does: attempts, the platform's last answer and the last error; an unknown
    state is a 400 that names the states, the page still shown."""
    from sqlalchemy import update

    from store.schema import webhook_log

    _queued(engine, "acme", "hospitable", 2, age=timedelta(minutes=5), state="dead")
    _queued(engine, "acme", "hospitable", 3, age=timedelta(minutes=1))
    with engine.begin() as conn:
        conn.execute(update(webhook_log).where(webhook_log.c.delivery_state == "dead").values(
            attempts=25, last_status=503, last_error="connection refused (10.0.0.9:443)\x1b[2J"))
    c = _client(engine)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = c.simulate_get("/admin/logs", params={"state": "dead"}, headers=auth)
    assert page.status_code == 200 and '<option value="dead" selected>dead</option>' in page.text
    assert page.text.count('<td class="delivery">dead 25x 503<br><span class="explain">connection refused '
                           '(10.0.0.9:443)\\x1b[2J</span></td>') == 2
    assert '<td class="delivery">pending' not in page.text and "\x1b" not in page.text
    both = c.simulate_get("/admin/logs?state=dead&state=pending", headers=auth)  # any of them, as the JSON API
    assert both.status_code == 200 and both.text.count('<td class="delivery">') == 5
    bad = c.simulate_get("/admin/logs", params={"state": "stuck"}, headers=auth)
    assert bad.status_code == 400 and "state: one of pending, retrying, delivered, dead" in bad.text
    assert bad.text.count('<td class="delivery">') == 5  # the filter dropped, the log shown


def test_a_database_that_stops_answering_gives_each_page_a_503_at_its_deadline_and_the_pages_come_back(
        pg_schemas: PgSchemas, monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_schemas.new()
    migrate.upgrade(url)
    with behind_proxy(url) as (proxy, proxied_url):
        _pages_through_a_partition(proxy, make_engine(proxied_url), monkeypatch)


def _pages_through_a_partition(proxy: TcpProxy, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        c = _client(engine)
        cookies = {"tenantctl_admin": _login(c)}
        assert c.simulate_get("/admin/", cookies=cookies).status_code == 200
        monkeypatch.setattr(admin_resources, "READ_DEADLINE_S", 1.0)
        proxy.hang()  # a partition: the open connections stay open and nothing answers
        for path in ("/admin/", "/admin/tenants/acme", "/admin/logs"):
            started = time.monotonic()
            r = c.simulate_get(path, cookies=cookies)
            assert (r.status_code, "Database unavailable" in r.text) == (503, True), (path, r.status_code)
            assert time.monotonic() - started < 2.5, path
        proxy.heal()
        assert c.simulate_get("/admin/", cookies=cookies).status_code == 200
    finally:
        proxy.heal()
        engine.dispose()


def test_a_database_that_fails_a_pages_read_gives_a_503_saying_so_not_a_500(engine: Engine) -> None:
    c = _client(engine)
    cookies = {"tenantctl_admin": _login(c)}
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE health_results")
    r = c.simulate_get("/admin/", cookies=cookies)
    assert r.status_code == 503 and "The database could not be read" in r.text
    assert "health_results" not in r.text  # the reason is for the server's log
