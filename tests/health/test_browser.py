"""The Integrations page in headless Chromium against a real `tenantctl serve`: log in with the keyboard,
read the cards, filter the Webhook Logs, open an onboarding tenant; no page shows any secret. Screenshots go
to $TMPDIR/tenantctl-shots/ (Debian's chromium and chromium-driver: `make browser`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.health.conftest import ADMIN, APP_SECRET, Rehearsal

pytestmark = pytest.mark.slow
# Screenshots for people to look at: a temporary folder (TENANTCTL_SHOTS_DIR to choose another).
SHOTS = Path(os.environ.get("TENANTCTL_SHOTS_DIR") or Path(tempfile.gettempdir()) / "tenantctl-shots")


@pytest.fixture(scope="module")
def chromium() -> None:
    subprocess.run(["make", "-s", "browser"], cwd=REPO, check=False, capture_output=True)
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing: run `make browser`")
        pytest.skip("chromium/chromedriver missing: run `make browser`")


@pytest.fixture
def browser(chromium: None) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or "chromium"
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver") or "chromedriver"))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def _no_secret(source: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if len(s) >= 6 and s in source]
    assert not leaked, "a secret is on the page"


def test_log_in_filter_the_log_open_a_tenant_and_no_secret_anywhere(rehearsal: Rehearsal, server: str,
                                                                    browser: object) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d: WebDriver = browser  # type: ignore[assignment]

    def until_heading(text: str) -> None:  # a click navigates asynchronously: wait for the new page
        # The old page's heading may be found just before the new page replaces it: then it is stale, and
        # the wait looks again.
        WebDriverWait(d, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
            lambda drv: drv.find_element(By.TAG_NAME, "h1").text == text)

    SHOTS.mkdir(exist_ok=True)
    env = {"TENANTCTL_META_APP_SECRETS": APP_SECRET, "TENANTCTL_ADMIN_TOKEN": ADMIN}
    assert rehearsal.run("simulate", "booking", "acme", "--server", server, env=env).code == 0
    bad = httpx.post(f"{server}/api/webhooks/hospitable/t/acme", content=b'{"id":"forged"}',
                     headers={"Signature": "00" * 32, "Content-Type": "application/json"})
    assert bad.status_code == 401
    rehearsal.run("health", "--sandbox")  # stored for the page
    base = server.replace("127.0.0.1", "localhost")  # a secure context: the Secure cookie is kept over http

    d.get(f"{base}/admin/")
    assert d.current_url.endswith("/admin/login") and d.find_element(By.TAG_NAME, "h1").text == "Log in"
    d.save_screenshot(str(SHOTS / "01-login.png"))
    _no_secret(d.page_source, rehearsal.secrets)
    token = d.switch_to.active_element  # autofocus: the keyboard starts in the token field
    assert token.get_attribute("id") == "token"
    token.send_keys(ADMIN, Keys.ENTER)
    until_heading("Integrations")
    sections = {s.get_attribute("aria-labelledby"): s for s in d.find_elements(By.CSS_SELECTOR, "section.tenant")}
    assert set(sections) == {"t-acme", "t-blue-harbor", "t-casa-sol"}
    acme = sections["t-acme"]
    assert acme.find_element(By.CSS_SELECTOR, ".accepted-24h").text == "2"
    assert acme.find_element(By.CSS_SELECTOR, ".rejected-24h").text == "1"
    cards = {c.get_attribute("aria-label"): c.text for c in acme.find_elements(By.CSS_SELECTOR, "article.card")}
    assert {"hospitable", "whatsapp", "nuki", "smtp"} <= set(cards)
    assert "Health: healthy" in cards["smtp"] and "Last inbound event: never" not in cards["hospitable"]
    assert len(acme.find_elements(By.CSS_SELECTOR, "svg rect")) == 25  # background + 24 hourly bars
    d.save_screenshot(str(SHOTS / "02-integrations.png"))
    _no_secret(d.page_source, [*rehearsal.secrets, ADMIN, APP_SECRET])

    d.find_element(By.LINK_TEXT, "Webhook Logs").click()
    until_heading("Webhook Logs")
    Select(d.find_element(By.ID, "f-tenant")).select_by_value("acme")
    Select(d.find_element(By.ID, "f-outcome")).select_by_value("rejected")
    d.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    WebDriverWait(d, 15).until(lambda drv: "outcome=rejected" in drv.current_url)
    assert "tenant=acme" in d.current_url
    rows = d.find_elements(By.CSS_SELECTOR, "#log tbody tr")
    assert len(rows) == 1 and "bad-signature" in rows[0].text
    assert "signature did not match: check the secret pasted at the provider" in rows[0].text
    d.save_screenshot(str(SHOTS / "03-webhook-logs-rejected.png"))
    _no_secret(d.page_source, [*rehearsal.secrets, ADMIN, APP_SECRET])

    d.find_element(By.LINK_TEXT, "Integrations").click()
    until_heading("Integrations")
    d.find_element(By.LINK_TEXT, "casa-sol").click()
    until_heading("Tenant casa-sol")
    checklist = d.find_element(By.CSS_SELECTOR, "ul.checklist").text
    assert "☐ to do: Hospitable API key answers and its webhook delivers" in checklist
    assert "Nuki" not in checklist  # casa-sol has no locks: only its own integrations are listed
    assert "progressing" in d.find_element(By.TAG_NAME, "table").text
    d.save_screenshot(str(SHOTS / "04-tenant-onboarding.png"))
    _no_secret(d.page_source, [*rehearsal.secrets, ADMIN, APP_SECRET])

    for slug in ("acme", "blue-harbor"):
        d.get(f"{base}/admin/tenants/{slug}")
        until_heading(f"Tenant {slug}")
        _no_secret(d.page_source, [*rehearsal.secrets, ADMIN, APP_SECRET])
    d.get(f"{base}/admin/logs")
    _no_secret(d.page_source, [*rehearsal.secrets, ADMIN, APP_SECRET])

    d.find_element(By.CSS_SELECTOR, "header form button").click()  # log out
    until_heading("Log in")
    d.get(f"{base}/admin/")
    assert d.current_url.endswith("/admin/login")


def test_each_card_shows_its_delivery_queue_in_the_served_page(rehearsal: Rehearsal, server: str,
                                                                 browser: object) -> None:
    """No worker runs here, so what the server accepted waits: each integration card of the served page says how
    many of its events are pending, retrying and dead, and how long the oldest has waited."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait
    from sqlalchemy import update

    from store.engine import make_engine
    from store.schema import webhook_log

    d: WebDriver = browser  # type: ignore[assignment]
    env = {"TENANTCTL_META_APP_SECRETS": APP_SECRET, "TENANTCTL_ADMIN_TOKEN": ADMIN}
    assert rehearsal.run("simulate", "booking", "acme", "--server", server, env=env).code == 0
    engine = make_engine(rehearsal.db_url)
    try:  # the WhatsApp message used up its attempts (the worker's doing, set directly here)
        with engine.begin() as conn:
            conn.execute(update(webhook_log).where(webhook_log.c.provider == "whatsapp")
                         .values(delivery_state="dead"))
    finally:
        engine.dispose()
    SHOTS.mkdir(exist_ok=True)
    base = server.replace("127.0.0.1", "localhost")  # a secure context: the Secure cookie is kept over http
    d.get(f"{base}/admin/login")
    d.switch_to.active_element.send_keys(ADMIN, Keys.ENTER)
    WebDriverWait(d, 15).until(lambda drv: drv.find_elements(By.CSS_SELECTOR, "section.tenant"))
    acme = d.find_element(By.CSS_SELECTOR, 'section[aria-labelledby="t-acme"]')
    queues = {c.get_attribute("aria-label"): c.find_element(By.CSS_SELECTOR, "p.delivery").text
              for c in acme.find_elements(By.CSS_SELECTOR, "article.card")
              if c.find_elements(By.CSS_SELECTOR, "p.delivery")}
    assert queues["hospitable"].startswith("Delivery queue: 1 pending, 0 retrying, 0 dead\noldest waiting: ")
    assert queues["whatsapp"] == "Delivery queue: 0 pending, 0 retrying, 1 dead"
    assert set(queues) <= {"hospitable", "whatsapp", "nuki", "beds24"}  # 2N and SMTP deliver nothing
    d.save_screenshot(str(SHOTS / "05-delivery-queue.png"))
    _no_secret(d.page_source, [*rehearsal.secrets, ADMIN, APP_SECRET])
