"""axe-core (headless Chromium, light and dark) over the workspace's pages in the states the
readers' lifecycle gives them (issue 23): the subscribers page with tags, the leaving
summary with answers and a paused reader, the segment count with a count, with nobody
matched, with an unknown tag and with a syntax error (each located), and an issue held by
a [sending] cap. Each page is first checked to really show that state."""

from __future__ import annotations

from datetime import UTC, timedelta
from urllib.parse import urlencode

import pytest

from newsletter.delivery import SendContext, send_issue
from newsletter.editors import add_editor
from newsletter.pacing import Caps
from newsletter.providers.outbox import OutboxProvider
from newsletter.records import SubscriberStatus, UnsubscribeReason, utcnow
from newsletter.subscribers import add_subscriber
from tests.conftest import delivery_policy, stub_issue
from tests.test_accessibility import AXE, axe_violations, browser  # noqa: F401
from tests.test_web import live_web

pytestmark = pytest.mark.skipif(not AXE.exists(), reason="axe-core not installed (npm ci)")
PASSWORD = "correct horse battery"


def _readers(store) -> None:
    for n in range(6):
        add_subscriber(store, f"r{n}@example.org", f"Reader {n}")
    store.tags.tag([f"r{n}@example.org" for n in (0, 1, 2, 5)], "films")  # 5 pauses
    store.tags.tag(["r2@example.org"], "horror")
    left = [store.subscribers.by_email(f"r{n}@example.org") for n in (3, 4, 5)]
    for reader, (reason, words) in zip(
        left,
        [
            (UnsubscribeReason.TOO_FREQUENT, ""),
            (UnsubscribeReason.OTHER, "I moved to the podcast"),
            (UnsubscribeReason.SPOILERS, ""),
        ],
        strict=True,
    ):
        assert reader is not None
        store.subscribers.suppress(reader.email, SubscriberStatus.UNSUBSCRIBED)
        store.subscribers.record_reason(reader.id, reason, words)
    assert store.subscribers.pause(left[2].id, utcnow() + timedelta(weeks=4))


def _paced_issue(web) -> int:
    rendered = stub_issue("paced", "Paced")
    issue_id = web.store.issues.create_issue(rendered, [])
    pace = Caps.parse(max_per_hour=1)
    policy = delivery_policy(batch_size=20, pace=pace, zone=UTC)
    ctx = SendContext.of(web.store, web.settings, OutboxProvider(web.settings), policy=policy)
    assert send_issue(ctx, issue_id).paced_until is not None
    return issue_id


def test_the_lifecycle_pages_of_the_workspace_have_no_axe_violations(
    tmp_path,
    browser,  # noqa: F811
    monkeypatch,
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as web:
        add_editor(web.store, "ed@example.com", PASSWORD)
        _readers(web.store)
        issue_id = _paced_issue(web)
        browser.get(f"{web.url}/admin/login")
        browser.find_element(By.ID, "email").send_keys("ed@example.com")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 10).until(lambda driver: "/admin/login" not in driver.current_url)

        def segment(expr: str) -> str:
            return "/admin/subscribers?" + urlencode({"segment": expr})

        pages = {
            "/admin/subscribers": ['<td class="tags">films horror</td>', "I moved to the podcast"],
            segment("tag:films"): ['id="segment-count"', "matches <strong>3</strong>"],
            segment("tag:films and not tag:films"): ["an issue sent to it would go to nobody"],
            segment("tag:nosuch"): ["column 1: unknown tag &#39;nosuch&#39;"],
            segment("tag:films and"): ["column 14: the expression ends early"],
            f"/admin/issues/{issue_id}": ["by the hourly cap, 2 left"],
        }
        found = {}
        for page, words in pages.items():
            for dark in (False, True):
                found[(page, dark)] = axe_violations(browser, web.url + page, dark)
                source = browser.page_source
                for word in words:
                    assert word.replace("&#39;", "'") in source.replace("&#39;", "'"), (
                        page,
                        word,
                    )
        problems = {key: v for key, v in found.items() if v}
        assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
