"""Leaving, over real HTTP (live uvicorn, real SQLite, the outbox provider): the one-click
unsubscribe stays one click and complete; the optional question after it is stored and
summarised in the workspace; "pause for 4 weeks" keeps the reader, skipped by planning until
the pause ends. axe-core in headless Chromium over the new pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from newsletter.editors import add_editor
from newsletter.records import PAUSE_LENGTH, SubscriberStatus, utcnow
from newsletter.store.schema import subscribers
from newsletter.subscribers import add_subscriber
from newsletter.subscribers.people import MAX_DETAIL_LENGTH
from tests.test_accessibility import AXE, TAGS, browser  # noqa: F401
from tests.test_admin_http import PASSWORD, Browser
from tests.test_web import ONE_CLICK, LiveWeb, live_web, publish_next

ACTIVE, UNSUBSCRIBED = SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED


@pytest.fixture
def web(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as live:
        add_editor(live.store, "ed@example.com", PASSWORD)
        yield live


def status(web: LiveWeb, sid: int) -> str:
    return web.store.subscribers.by_id(sid).status


def test_one_click_stays_complete_and_the_question_is_optional(web):
    reader = add_subscriber(web.store, "r@example.org", "R")
    path = f"/unsubscribe/{reader.token}"
    # What a mail provider posts (RFC 8058): one request, unsubscribed, no answer needed.
    reply = web.request("POST", path, ONE_CLICK, {"Content-Type": "multipart/form-data"})
    assert reply.status == 200
    assert status(web, reader.id) == UNSUBSCRIBED
    assert 'id="reason-form"' in reply.text and 'id="pause-form"' in reply.text
    # The answer, posted back to the same address: stored, still unsubscribed.
    reply = web.post_form(path, {"reason": "other", "detail": "  I moved   to podcasts "})
    assert reply.status == 200 and 'id="answer-saved"' in reply.text
    assert status(web, reader.id) == UNSUBSCRIBED
    summary = web.store.subscribers.leaving_summary()
    assert summary.counts["other"] == 1 and summary.recent_other == ("I moved to podcasts",)
    # A second answer replaces the first; detail only travels with "other".
    web.post_form(path, {"reason": "spoilers", "detail": "ignored"})
    summary = web.store.subscribers.leaving_summary()
    assert summary.counts == {"too_frequent": 0, "not_relevant": 0, "spoilers": 1, "other": 0}
    assert summary.recent_other == ()
    # A reason nobody offered is not stored, and the unsubscribe still stands.
    web.post_form(path, {"reason": "<script>"})
    assert web.store.subscribers.leaving_summary().answers == 1


def test_a_long_answer_is_kept_to_its_first_500_characters(web):
    reader = add_subscriber(web.store, "long@example.org", "L")
    path = f"/unsubscribe/{reader.token}"
    web.post_form(path, {"reason": "other", "detail": "  word\n" * 200})  # 1,600 characters
    (kept,) = web.store.subscribers.leaving_summary().recent_other
    assert kept == ("word " * 100)[:MAX_DETAIL_LENGTH] and len(kept) == MAX_DETAIL_LENGTH == 500
    assert status(web, reader.id) == UNSUBSCRIBED


def test_the_workspace_summarises_why_readers_left(web):
    for n, reason in enumerate(["too_frequent", "too_frequent", "not_relevant", "other"]):
        reader = add_subscriber(web.store, f"r{n}@example.org", "R")
        web.post_form(f"/unsubscribe/{reader.token}", {"reason": reason, "detail": f"words {n}"})
    editor = Browser(web)
    assert editor.sign_in().status == 303
    page = editor.get("/admin/subscribers")
    assert page.status == 200
    section = page.text[page.text.index('id="leaving"') :]
    assert "<td>Too many emails</td><td>2</td>" in section
    assert "<td>Not relevant to me</td><td>1</td>" in section
    assert "<td>Too many spoilers</td><td>0</td>" in section
    assert "<li>words 3</li>" in section and "words 0" not in section


def test_a_pause_keeps_the_reader_who_is_skipped_until_it_ends(web):
    paused = add_subscriber(web.store, "p@example.org", "P")
    other = add_subscriber(web.store, "o@example.org", "O")
    path = f"/unsubscribe/{paused.token}"
    assert web.post_form(path, {}).status == 200
    assert status(web, paused.id) == UNSUBSCRIBED
    reply = web.post_form(path, {"action": "pause"})
    assert reply.status == 200 and "Paused for four weeks" in reply.text
    assert status(web, paused.id) == ACTIVE
    until = web.store.subscribers.paused_until(paused.id)
    assert until is not None
    assert abs(until - (utcnow() + PAUSE_LENGTH)) < timedelta(minutes=1)
    assert web.store.subscribers.leaving_summary().paused == 1
    issue = _publish(web)
    assert set(web.store.deliveries.sent_emails(issue)) == {other.email}
    # Four weeks later (the pause moved into the past), the reader is planned again.
    with web.store.transaction() as conn:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == paused.id)
            .values(paused_until=utcnow() - timedelta(seconds=1))
        )
    issue = _publish(web)
    assert set(web.store.deliveries.sent_emails(issue)) == {other.email, paused.email}


def test_a_bounced_reader_cannot_pause_back_in(web):
    reader = add_subscriber(web.store, "b@example.org", "B")
    web.store.subscribers.suppress(reader.email, SubscriberStatus.BOUNCED)
    reply = web.post_form(f"/unsubscribe/{reader.token}", {"action": "pause"})
    assert reply.status == 200 and "Paused" not in reply.text
    assert status(web, reader.id) == SubscriberStatus.BOUNCED


def _publish(web: LiveWeb) -> int:
    from tests.test_web import SAMPLE_ARTICLES

    names = sorted(p.name for p in SAMPLE_ARTICLES.glob("*.txt"))
    used = len(web.store.issues.list_issues())
    return publish_next(web, names[used])


# -- accessibility ---------------------------------------------------------------------------
@pytest.mark.skipif(not AXE.exists(), reason="axe-core not installed (npm ci)")
def test_the_leaving_pages_have_no_axe_violations(web, browser):  # noqa: F811
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import (
        presence_of_element_located as present,
    )
    from selenium.webdriver.support.wait import WebDriverWait

    def wait(driver):
        return WebDriverWait(driver, 10)

    reader = add_subscriber(web.store, "a@example.org", "A")
    found: list[str] = []
    for dark in (False, True):
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
        )
        browser.get(f"{web.url}/unsubscribe/{reader.token}")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait(browser).until(present((By.ID, "reason-form")))
        found += _axe(browser, json, "unsubscribed", dark)
        browser.find_element(By.ID, "reason-too_frequent").click()
        browser.find_element(By.CSS_SELECTOR, "#reason-form button").click()
        wait(browser).until(present((By.ID, "answer-saved")))
        found += _axe(browser, json, "answered", dark)
        browser.find_element(By.CSS_SELECTOR, "#pause-form button").click()
        wait(browser).until(lambda driver: "Paused" in driver.title)
        found += _axe(browser, json, "paused", dark)
    assert found == []


def _axe(driver, json, name: str, dark: bool) -> list[str]:
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, arguments[0]).then(r => done(JSON.stringify(r.violations)),"
        " e => done(JSON.stringify([{id: 'axe-error', help: String(e), nodes: []}])));",
        {"runOnly": {"type": "tag", "values": TAGS}},
    )
    return [
        f"{name} ({'dark' if dark else 'light'}) {v['id']}: {v['help']}" for v in json.loads(result)
    ]
