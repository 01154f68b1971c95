"""The editors' main flow in a real headless Chromium against a live `newsletter serve`
(uvicorn on 127.0.0.1, a real SQLite file) and the local SendGrid-compatible server: sign in,
queue articles, reorder (seen by `newsletter queue list`), preview with the check, a proof,
pause/resume, live counts reaching "sent" while `newsletter run --once` sends, uncertain
rows resolved, subscribers searched and one unsubscribed; every page on a 375 px screen."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

from newsletter import publish
from newsletter.editors import add_editor
from newsletter.records import DeliveryState, SubscriberStatus
from newsletter.screenshot import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS
from newsletter.subscribers import signing_secret
from newsletter.testing.sendgrid_server import SendGridServer
from newsletter.tokens import new_token
from tests.conftest import run_cli
from tests.test_web import SAMPLE_ARTICLES, live_web

KEY = "SG.admin-browser-test-key"
PASSWORD = "correct horse battery"
READERS = 300
FLAGS = (*CHROMIUM_FLAGS, "--disable-dev-shm-usage", "--window-size=375,812")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    assert driver_path, "chromedriver is not installed (apt-get install chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-admin')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def fits_the_screen(driver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def press(driver, button) -> None:
    """Click and wait until the browser shows the next page (the old document is gone and
    the new one loaded). The old page's nodes may vanish while being looked at: that too
    means the page was left."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    button.click()

    def left(_driver) -> bool:
        try:
            old.is_enabled()
        except WebDriverException:  # stale, or replaced while asked
            return True
        return False

    WebDriverWait(driver, 15).until(left)
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_an_editor_runs_the_newsletter_from_the_browser(tmp_path, browser, monkeypatch):
    from selenium.webdriver.common.by import By

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)  # the proof is sent by the web process
    with (
        SendGridServer(api_key=KEY) as sendgrid,
        live_web(
            tmp_path,
            env={"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_HOST": sendgrid.url},
        ) as web,
    ):
        cli_env = {
            "NEWSLETTER_PROVIDER": "sendgrid",
            "SENDGRID_API_HOST": sendgrid.url,
            "SENDGRID_API_KEY": KEY,
            "NEWSLETTER_BASE_URL": web.url,
        }
        store, settings = web.store, web.settings
        add_editor(store, "ed@example.com", PASSWORD)
        secret = signing_secret(store)
        store.subscribers.add(
            {
                "email": f"reader{i:05d}@example.com",
                "name": f"Reader {i}",
                "token": new_token(secret),
            }
            for i in range(READERS)
        )

        # -- sign in ------------------------------------------------------------------------
        browser.get(f"{web.url}/admin/queue")
        assert browser.current_url.startswith(f"{web.url}/admin/login")
        browser.find_element(By.ID, "email").send_keys("ed@example.com")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        assert browser.current_url == f"{web.url}/admin/queue"
        assert browser.find_element(By.TAG_NAME, "h1").text == "Queue"
        assert fits_the_screen(browser)

        # -- a pasted article with a mistake: the parser's line-numbered error ---------------
        browser.find_element(By.ID, "filename").send_keys("broken.md")
        browser.find_element(By.ID, "markdown").send_keys(
            "---\ntitle: Broken\nrating: eleven\n---\n\n## Quick Recap\n\nText.\n"
        )
        press(
            browser, browser.find_element(By.CSS_SELECTOR, "form[action='/admin/queue/add'] button")
        )
        errors = browser.find_element(By.ID, "add-errors").text
        assert "broken.md:3:" in errors and "rating" in errors
        assert store.articles.queued() == []

        # -- upload two articles -------------------------------------------------------------
        for name in ("003_the-orchard-accounts.md", "002_static-over-galveston.txt"):
            browser.find_element(By.ID, "file").send_keys(str(SAMPLE_ARTICLES / name))
            press(
                browser,
                browser.find_element(By.CSS_SELECTOR, "form[action='/admin/queue/add'] button"),
            )
            assert f"Queued {name}" in browser.find_element(By.CSS_SELECTOR, ".notice").text
        view = publish.queue_view(store, settings)
        items = browser.find_elements(By.CSS_SELECTOR, "#queue > li")
        assert [i.get_attribute("data-filename") for i in items] == [
            "003_the-orchard-accounts.md",
            "002_static-over-galveston.txt",
        ]
        for item, entry in zip(items, view.entries, strict=True):
            expected = entry.expected.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")
            assert item.find_element(By.CSS_SELECTOR, ".expected").text == expected
        assert fits_the_screen(browser)

        # -- reorder; the CLI sees the new order ----------------------------------------------
        first = browser.find_element(By.CSS_SELECTOR, "#queue > li:first-child")
        press(browser, first.find_element(By.CSS_SELECTOR, "button[value=down]"))
        listing = run_cli(["queue", "list"], cwd=tmp_path, env=cli_env)
        assert listing.returncode == 0, listing.stderr
        lines = [
            line for line in listing.stdout.splitlines() if line.strip()[:2].strip(". ").isdigit()
        ]
        assert "002_static-over-galveston.txt" in lines[0]
        assert "003_the-orchard-accounts.md" in lines[1]

        # -- preview, check results and a proof ----------------------------------------------
        first = browser.find_element(By.CSS_SELECTOR, "#queue > li:first-child")
        press(browser, first.find_element(By.LINK_TEXT, "Preview"))
        summary = browser.find_element(By.ID, "check-summary").text
        assert summary == "No problems found." or " error" in summary
        assert browser.find_element(By.ID, "subject").text
        assert len(browser.find_elements(By.CSS_SELECTOR, ".frames iframe")) == 3
        assert (
            "Static Over Galveston".lower() in browser.find_element(By.ID, "text-part").text.lower()
        )
        assert fits_the_screen(browser)
        press(browser, browser.find_element(By.XPATH, "//button[text()='Send a test to me']"))
        assert "Sent a test" in browser.find_element(By.CSS_SELECTOR, ".notice").text
        proofs = [m for m in sendgrid.messages if m.to == "ed@example.com"]
        assert len(proofs) == 1

        # -- an issue: one batch lost by a crashed sender, then pause and resume -------------
        picked, problems = publish.pick(store, settings, view.entries[0].expected)
        assert picked and not problems
        issue_id = publish.build_issue(store, settings, picked[:1])
        crashed = store.deliveries.claim(issue_id, 5, worker="crashed-sender")
        assert store.deliveries.in_flight_to_uncertain(issue_id, worker="crashed-sender") == 5
        browser.get(f"{web.url}/admin/issues")
        assert fits_the_screen(browser)
        press(browser, browser.find_element(By.CSS_SELECTOR, f"#issues a[href$='/{issue_id}']"))
        status = lambda: browser.find_element(By.ID, "issue-status").text  # noqa: E731
        assert status() == "sending"
        press(browser, browser.find_element(By.CSS_SELECTOR, "button[value=pause]"))
        assert status() == "paused" and store.issues.issue_status(issue_id) == "paused"
        press(browser, browser.find_element(By.CSS_SELECTOR, "button[value=resume]"))
        assert status() == "sending"

        # -- send for real; the counts reach "sent" without a reload ------------------------
        browser.execute_script("window.stillTheSamePage = true")
        run = subprocess.Popen(
            [sys.executable, "-m", "newsletter.cli", "run", "--once"],
            cwd=tmp_path,
            env={**run_env(), **cli_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = run.communicate(timeout=120)
        finally:
            run.kill()
        assert run.returncode == 0, err
        sent = lambda: browser.find_element(By.CSS_SELECTOR, "[data-state=sent]").text  # noqa: E731
        wait_until(lambda: sent() == str(READERS - 5) and status() == "sent", what="live counts")
        assert browser.execute_script("return window.stillTheSamePage === true")

        # -- uncertain rows: one marked sent, the rest resent ------------------------------
        browser.get(f"{web.url}/admin/issues/{issue_id}")
        rows = browser.find_elements(By.CSS_SELECTOR, "#uncertain tbody tr")
        assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [
            r.email for r in crashed.recipients
        ]
        press(browser, rows[0].find_element(By.CSS_SELECTOR, "button[value=mark-sent]"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#uncertain tbody tr")) == 4
        press(browser, browser.find_element(By.XPATH, "//button[text()='Resend all']"))
        assert status() == "sending"
        again = run_cli(["run", "--once"], cwd=tmp_path, env=cli_env)
        assert again.returncode == 0, again.stderr
        browser.get(f"{web.url}/admin/issues/{issue_id}")
        counts = store.deliveries.counts(issue_id)
        assert counts[DeliveryState.SENT] == READERS and counts[DeliveryState.UNCERTAIN] == 0
        assert browser.find_element(By.CSS_SELECTOR, "[data-state=sent]").text == str(READERS)
        assert fits_the_screen(browser)

        # -- subscribers: search, then unsubscribe one ---------------------------------------
        browser.get(f"{web.url}/admin/subscribers")
        assert fits_the_screen(browser)
        browser.find_element(By.ID, "q").send_keys("READER0001")
        press(browser, browser.find_element(By.CSS_SELECTOR, "form[role=search] button"))
        found = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#subscribers td.email")]
        assert found == [f"reader{i:05d}@example.com" for i in range(10, 20)]
        press(browser, browser.find_element(By.CSS_SELECTOR, "#subscribers button"))
        assert (
            "Unsubscribed reader00010@example.com"
            in browser.find_element(By.CSS_SELECTOR, ".notice").text
        )
        assert (
            store.subscribers.by_email("reader00010@example.com").status
            == SubscriberStatus.UNSUBSCRIBED
        )

        # -- the schedule shows the next ticks ------------------------------------------------
        browser.get(f"{web.url}/admin/schedule")
        assert browser.find_elements(By.CSS_SELECTOR, ".tick")
        assert fits_the_screen(browser)


def run_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}


# Every word of the tables' cells, as the browser laid it out: a token (a run of non-blank
# characters: an address, a date, a button's label) whose characters sit on more than one
# line was broken inside. Spaces are where a line may break; nothing else is.
BROKEN_TOKENS_JS = """
const broken = [];
for (const cell of document.querySelectorAll(arguments[0])) {
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.textContent.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
      if (tops.size > 1) broken.push(match[0]);
    }
  }
}
return broken;
"""


def test_the_workspace_reads_on_a_phone(tmp_path, browser, monkeypatch):
    """Issue 25, point 7, at 375 px: no page wider than the screen, no address, date or label
    broken inside a word (tables scroll inside their box instead), the phone preview not cut
    off, the warning badge a pill, and the preview's check as many warnings as `check`."""
    from selenium.webdriver.common.by import By

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as web:
        store, settings = web.store, web.settings
        add_editor(store, "ed@example.com", PASSWORD)
        secret = signing_secret(store)
        store.subscribers.add(
            {
                "email": f"reader{i:02d}@example.com",
                "name": f"Reader Number {i}",
                "token": new_token(secret),
            }
            for i in range(1, 13)
        )
        for name in ("002_static-over-galveston.txt", "003_the-orchard-accounts.md"):
            publish.queue_add(store, settings, SAMPLE_ARTICLES / name)
        picked, problems = publish.pick(
            store, settings, publish.queue_view(store, settings).entries[0].expected
        )
        assert picked and not problems
        publish.build_issue(store, settings, picked[:1])

        browser.get(f"{web.url}/admin/login")
        browser.find_element(By.ID, "email").send_keys("ed@example.com")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        # Headless Chromium keeps a window at least 500 px wide: a phone's viewport is emulated.
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True},
        )
        browser.get(f"{web.url}/admin/queue")
        assert browser.execute_script("return window.innerWidth") == 375

        for path, table in (("/admin/subscribers", "#subscribers"), ("/admin/issues", "#issues")):
            browser.get(f"{web.url}{path}")
            assert fits_the_screen(browser), path
            cells = f"{table} td, {table} th"
            assert len(browser.find_elements(By.CSS_SELECTOR, cells)) > 4, path
            assert browser.execute_script(BROKEN_TOKENS_JS, cells) == [], path
            # The table may be wider than the screen: then its own box scrolls, not the page.
            box = browser.execute_script(
                "const b = document.querySelector(arguments[0]).closest('.scroll')"
                ".getBoundingClientRect(); return [b.left, b.right, window.innerWidth]",
                table,
            )
            assert 0 <= box[0] and box[1] <= box[2], (path, box)

        queued = store.articles.queued()[0]
        browser.get(f"{web.url}/admin/queue/{queued.id}/preview")
        assert fits_the_screen(browser)
        # The phone frame shows its whole width, inside the screen.
        frame = browser.execute_script(
            "const box = document.querySelector('.frame.phone .scroll');"
            "const f = box.querySelector('iframe').getBoundingClientRect();"
            "const b = box.getBoundingClientRect();"
            "return [f.left, f.right, b.left, b.right, box.scrollWidth, box.clientWidth,"
            " window.innerWidth]"
        )
        assert frame[2] <= frame[0] and frame[1] <= frame[3] <= frame[6], frame
        assert frame[4] <= frame[5], f"the phone frame scrolls sideways: {frame}"
        # A badge is a pill: the same on both sides (the warning banner's left bar was not).
        badges = browser.execute_script(
            "return [...document.querySelectorAll('#findings .badge')].map(b => {"
            " const s = getComputedStyle(b);"
            " return [b.textContent, s.borderLeftWidth, s.borderRightWidth,"
            " s.paddingLeft, s.paddingRight]; })"
        )
        assert any(b[0] == "warning" for b in badges), badges
        assert all(b[1] == b[2] and b[3] == b[4] for b in badges), badges
        # The same findings as `newsletter check FILE` (the postal address was left out).
        summary = browser.find_element(By.ID, "check-summary").text
        checked = run_cli(["check", str(settings.issues_dir / queued.filename)], cwd=tmp_path)
        said = re.search(r"(\d+) errors?, (\d+) warnings?", checked.stdout)
        assert said, checked.stdout + checked.stderr
        assert summary == f"{said[1]} error{'s' * (said[1] != '1')}, {said[2]} warning" + (
            "s" if said[2] != "1" else ""
        ), (summary, checked.stdout)
        assert "postal_address" in browser.find_element(By.ID, "findings").text
