"""The editorial calendar: the next 8 ticks with the articles each would take (queue order,
not-before dates, an issue prepared and its approval state, the feeds fetched before each),
through the real workspace over HTTP; moving an article changes it; and in headless Chromium
at 375 px (no horizontal overflow) with axe-core finding nothing, light and dark."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from newsletter import publish
from newsletter.editors import add_editor
from newsletter.planner import plan_ticks
from newsletter.providers import make_provider
from newsletter.records import utcnow
from newsletter.subscribers import add_subscriber
from tests.test_accessibility import AXE, axe_violations
from tests.test_admin_browser import CHROMIUM, browser, fits_the_screen, press  # noqa: F401
from tests.test_admin_http import PASSWORD, Browser, csrf_of
from tests.test_approval import approval_folder
from tests.test_web import SAMPLE_ARTICLES, serve_folder

NAMES = (
    "001_the-lighthouse-keepers-daughter.txt",
    "002_static-over-galveston.txt",
    "003_the-orchard-accounts.md",
)


def with_feed(folder, url: str = "https://site.example/feed/") -> None:
    config = folder / "newsletter.toml"
    config.write_text(config.read_text() + f'\n[[feeds]]\nurl = "{url}"\nevery_minutes = 60\n')


def queued_in_order(live) -> None:
    for name in NAMES:
        publish.queue_add(live.store, live.settings, SAMPLE_ARTICLES / name)


def test_the_plan_follows_the_queue_not_before_dates_approval_and_feeds(tmp_path):
    with_feed(approval_folder(tmp_path))
    with serve_folder(tmp_path) as live:
        add_editor(live.store, "ed1@example.com", PASSWORD)
        add_subscriber(live.store, "reader@example.com", "Reader")
        queued_in_order(live)
        now = utcnow()
        ticks = publish.next_ticks(live.settings, now, 8)
        # The first article may not go before the third tick.
        publish.set_not_before(
            live.store, live.settings, NAMES[0], ticks[2].astimezone(live.settings.timezone)
            .strftime("%Y-%m-%d %H:%M")
        )  # fmt: skip
        plan = plan_ticks(live.store, live.settings, now)
        assert [t.at for t in plan] == ticks and len(plan) == 8
        assert [[a.filename for a in t.articles] for t in plan[:4]] == [
            [NAMES[1]],
            [NAMES[2]],
            [NAMES[0]],
            [],
        ]
        assert plan[2].articles[0].not_before == ticks[2]
        assert all(t.feeds == ["https://site.example/feed/"] for t in plan)  # hourly: each
        # The scheduler prepares the next issue: that slot keeps it, awaiting approval.
        prepared = publish.prepare_next(
            publish.TickContext.of(live.store, live.settings, make_provider(live.settings)), now
        )
        plan = plan_ticks(live.store, live.settings, now)
        assert (plan[0].issue_id, plan[0].approval) == (prepared, "awaiting_approval")
        assert [a.filename for a in plan[0].articles] == [NAMES[1]]
        assert plan[0].articles[0].article_id is None  # no longer movable: it is an issue
        assert [[a.filename for a in t.articles] for t in plan[1:3]] == [[NAMES[2]], [NAMES[0]]]


def test_a_feed_is_expected_only_before_the_ticks_it_will_have_been_fetched_for(tmp_path):
    """A weekly feed and a five-daily one under a twice-weekly cadence, from an injected
    Monday: each tick lists a feed only when a fetch falls between it and the tick before."""
    from newsletter.settings import load_settings
    from newsletter.store import Store

    folder = approval_folder(tmp_path)
    with_feed(folder, "https://weekly.example/feed/")
    config = folder / "newsletter.toml"
    config.write_text(
        config.read_text()
        + '\n[[feeds]]\nurl = "https://fivedays.example/feed/"\nevery_minutes = 7200\n'
    )
    config.write_text(config.read_text().replace("every_minutes = 60\n", "every_minutes = 10080\n"))
    settings = load_settings(config, env={})
    store = Store(settings.database_url)
    try:
        monday = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # fetched first now, then weekly
        plan = plan_ticks(store, settings, monday)
        assert [t.at.date().isoformat() for t in plan][:3] == [
            "2026-12-08", "2026-12-11", "2026-12-15"
        ]  # fmt: skip
        weekly = ["https://weekly.example/feed/" in t.feeds for t in plan]
        five = ["https://fivedays.example/feed/" in t.feeds for t in plan]
        assert weekly == [True, False] * 4  # fetched Dec 7, 14, 21, 28
        # fetched Dec 7, 12, 17, 22 and 27 at 10:00 UTC, Jan 1 after that day's 08:00 tick
        assert five == [True, False, True, True, False, True, True, False]
    finally:
        store.close()


def test_the_calendar_page_shows_eight_ticks_and_moving_an_article_changes_it(tmp_path):
    with_feed(approval_folder(tmp_path))
    with serve_folder(tmp_path) as live:
        add_editor(live.store, "ed1@example.com", PASSWORD)
        queued_in_order(live)
        browser = Browser(live)
        assert browser.sign_in("ed1@example.com").status == 303
        page = browser.get("/admin/calendar")
        assert page.status == 200
        assert len(re.findall(r"<li data-tick=", page.text)) == 8
        order = re.findall(r'<li data-filename="([^"]+)"', page.text)
        assert order == list(NAMES)
        assert 'Feeds fetched before it: <span class="feed">https://site.example/feed/' in (
            page.text
        )
        second = live.store.articles.queued()[1].id
        moved = browser.post(
            f"/admin/calendar/{second}/move", {"csrf_token": csrf_of(page), "direction": "up"}
        )
        assert moved.status == 303 and moved.headers["location"] == "/admin/calendar"
        order = re.findall(r'<li data-filename="([^"]+)"', browser.get("/admin/calendar").text)
        assert order == [NAMES[1], NAMES[0], NAMES[2]]
        assert browser.post(f"/admin/calendar/{second}/move", {"direction": "up"}).status == 403


@pytest.mark.skipif(not (CHROMIUM.exists() and AXE.exists()), reason="Chromium or axe-core")
def test_the_calendar_reads_on_a_phone_with_no_axe_violation(tmp_path, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    with_feed(approval_folder(tmp_path), "https://a-site-with-a-rather-long-name.example/feed/")
    with serve_folder(tmp_path) as live:
        add_editor(live.store, "ed1@example.com", PASSWORD)
        add_subscriber(live.store, "reader@example.com", "Reader")
        queued_in_order(live)
        ctx = publish.TickContext.of(live.store, live.settings, make_provider(live.settings))
        publish.prepare_next(ctx, utcnow() - timedelta(minutes=1))
        browser.get(f"{live.url}/admin/login")
        browser.find_element(By.ID, "email").send_keys("ed1@example.com")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True},
        )
        browser.get(f"{live.url}/admin/calendar")
        assert browser.execute_script("return window.innerWidth") == 375
        assert fits_the_screen(browser)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#ticks > li")) == 8
        assert browser.find_elements(By.CSS_SELECTOR, "[data-approval=awaiting_approval]")
        # Moving from the phone: the button is pressed, the calendar comes back reordered.
        before = [e.get_attribute("data-filename") for e in browser.find_elements(
            By.CSS_SELECTOR, "li[data-filename]")]  # fmt: skip
        press(browser, browser.find_elements(By.CSS_SELECTOR, "button[value=down]")[0])
        after = [e.get_attribute("data-filename") for e in browser.find_elements(
            By.CSS_SELECTOR, "li[data-filename]")]  # fmt: skip
        assert after != before and sorted(after) == sorted(before)
        assert fits_the_screen(browser)
        issue = live.store.issues.prepared_issues()[0].id
        for dark in (False, True):
            for path in ("/admin/calendar", f"/admin/issues/{issue}", "/admin/feeds"):
                assert axe_violations(browser, live.url + path, dark) == [], (path, dark)
                assert fits_the_screen(browser), path
