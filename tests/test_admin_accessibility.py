"""axe-core over every page of the editors' workspace, in light and dark mode, signed in as an
editor on a live server with one issue sent and a deliverability report (the same rules as
the public pages)."""

from __future__ import annotations

import pytest

from newsletter import publish
from newsletter.doctor import diagnose
from newsletter.doctor.gate import remember
from newsletter.editors import add_editor
from newsletter.providers import make_provider
from newsletter.resources import sample_articles, sample_subscribers
from newsletter.subscribers import import_csv
from tests.dns_server import SilentServer
from tests.test_accessibility import AXE, axe_violations, browser  # noqa: F401
from tests.test_web import live_web

pytestmark = pytest.mark.skipif(not AXE.exists(), reason="axe-core not installed (npm ci)")


def test_workspace_pages_have_no_axe_violations(tmp_path, browser, monkeypatch):  # noqa: F811
    from selenium.webdriver.common.by import By

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as web:
        for article in sample_articles():
            publish.queue_add(web.store, web.settings, article)
        import_csv(web.store, sample_subscribers())
        ctx = publish.TickContext.of(web.store, web.settings, make_provider(web.settings))
        issue_id = publish.publish_tick(ctx).issue_id
        add_editor(web.store, "ed@example.com", "correct horse battery")
        # A report full of findings for the Deliverability page: a DNS server that never
        # answers makes every check an error (named timeouts), with records to publish.
        silent = SilentServer()
        try:
            env = {"NEWSLETTER_DNS_SERVER": silent.address}
            remember(web.store, diagnose(web.settings, web.store, env=env))
        finally:
            silent.close()
        browser.get(f"{web.url}/admin/login")
        assert axe_violations(browser, f"{web.url}/admin/login", dark=False) == []
        browser.find_element(By.ID, "email").send_keys("ed@example.com")
        browser.find_element(By.ID, "password").send_keys("correct horse battery")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        first = web.store.articles.queued()[0].id
        pages = [
            "/admin/queue",
            f"/admin/queue/{first}/preview",
            "/admin/issues",
            f"/admin/issues/{issue_id}",
            "/admin/schedule",
            "/admin/subscribers",
            "/admin/deliverability",
        ]
        found = {
            (page, dark): axe_violations(browser, web.url + page, dark)
            for page in pages
            for dark in (False, True)
        }
        problems = {key: v for key, v in found.items() if v}
        assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
