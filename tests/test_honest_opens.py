"""Honest opens, through the real signed webhook (the local SendGrid server signs, a live
uvicorn receives, real SQLite): SendGrid's machine opens and Apple's proxy are counted apart
from people's opens, in the issue's counters, the workspace's chart and `newsletter status`;
only a human open moves a reader's last open (what `opened<90d` reads)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from newsletter.editors import add_editor
from newsletter.subscribers import add_subscriber
from newsletter.testing.sendgrid_server import SendGridServer
from newsletter.web.events import PUBLIC_KEY_ENV
from tests.conftest import run_cli
from tests.test_admin_http import PASSWORD, Browser
from tests.test_web import event, live_web, publish_next

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)


def test_machine_opens_are_counted_apart_everywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with SendGridServer() as sendgrid:
        monkeypatch.setenv(PUBLIC_KEY_ENV, sendgrid.public_key_base64)
        with live_web(tmp_path) as web:
            add_editor(web.store, "ed@example.com", PASSWORD)
            person = add_subscriber(web.store, "person@example.com", "P")
            proxied = add_subscriber(web.store, "proxied@example.com", "Q")
            scanned = add_subscriber(web.store, "scanned@example.com", "S")
            issue_id = publish_next(web, "003_the-orchard-accounts.md")
            hour = int(time.time()) // 3600 * 3600
            ids = {"issue_id": str(issue_id), "timestamp": hour - 60}

            def sid(subscriber, n: int) -> dict:
                return {**ids, "subscriber_id": str(subscriber.id), "sg_event_id": f"ev-{n}"}

            events = [
                event("open", person.email, useragent=IPHONE, **sid(person, 1)),
                event("open", proxied.email, useragent="Mozilla/5.0", **sid(proxied, 2)),
                event("open", scanned.email, sg_machine_open=True, **sid(scanned, 3)),
                event("click", person.email, **sid(person, 4)),
            ]
            url = f"{web.url}/webhooks/sendgrid"
            assert sendgrid.post_events(events, url=url) == 200
            assert sendgrid.post_events(events, url=url) == 200  # redelivered: once
            issue = web.store.issues.get_issue(issue_id)
            assert (issue.opens, issue.machine_opens, issue.clicks) == (1, 2, 1)
            at = datetime.fromtimestamp(hour - 3600, UTC)
            assert sorted(web.store.engagement.series(issue_id)) == [
                ("click", at, 1),
                ("machine", at, 2),
                ("open", at, 1),
            ]
            opened = web.store.subscribers.last_opened
            assert opened(person.id) == datetime.fromtimestamp(hour - 60, UTC)
            assert opened(proxied.id) is None and opened(scanned.id) is None

            editor = Browser(web)
            assert editor.sign_in().status == 303
            page = editor.get(f"/admin/issues/{issue_id}")
            assert "Human opens 1 · machine opens 2 · clicks 1" in page.text
            assert "human opens 1" in page.text and "machine opens 2" in page.text

            done = run_cli(["status", str(issue_id)], tmp_path, {"NEWSLETTER_BASE_URL": web.url})
            assert done.returncode == 0, done.stderr
            assert "human opens 1  machine opens 2  clicks 1" in done.stdout
