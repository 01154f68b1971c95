"""axe-core (npm) in headless Chromium over every public page and the rendered email, in light
and dark mode: a colour-contrast or landmark regression fails here, not in a reader's inbox.

Everything is driven as a user would: `newsletter init --sample`, an import, `run --once` on the
outbox, then `newsletter serve` in a subprocess; the email is the HTML part of a real .eml."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from newsletter.screenshot import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS
from tests.conftest import REPO, run_cli

AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.1 A/AA plus axe's best practices (landmarks, one main, headings).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]

# Skipped where the tools are missing, except under CI (CI=true), where that is a failure.
_MISSING = [
    what
    for what, present in (("Chromium", CHROMIUM.exists()), ("axe-core (npm ci)", AXE.exists()))
    if not present
]
if _MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(f"accessibility tests need {', '.join(_MISSING)} under CI")
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"not installed: {', '.join(_MISSING)}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A newsletter with one issue sent to the outbox and `newsletter serve` running on it."""
    folder = tmp_path_factory.mktemp("a11y")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {"NEWSLETTER_BASE_URL": base_url}
    for args in (["init", "--sample"], ["run", "--once"]):
        done = run_cli(args, folder, env)
        assert done.returncode == 0, done.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter.cli", "serve", "--port", str(port)],
        cwd=folder,
        env={**_clean_env(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/archive", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "newsletter serve did not start"
                time.sleep(0.1)
        yield folder, base_url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('axe-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
    driver.set_page_load_timeout(15)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def axe_violations(driver, url: str, dark: bool, disabled: tuple[str, ...] = ()) -> list[str]:
    """Load `url` in the given colour scheme, run axe-core on it, and describe each violation."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
    )
    driver.get(url)
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    options = {
        "runOnly": {"type": "tag", "values": TAGS},
        "rules": {rule: {"enabled": False} for rule in disabled},
    }
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, arguments[0]).then(r => done(JSON.stringify(r.violations)),"
        " e => done(JSON.stringify([{id: 'axe-error', help: String(e), nodes: []}])));",
        options,
    )
    return [
        f"{v['id']}: {v['help']} -> " + "; ".join(n.get("target", [""])[0] for n in v["nodes"][:3])
        for v in json.loads(result)
    ]


def _public_pages(folder: Path, base_url: str) -> list[str]:
    index = urllib.request.urlopen(f"{base_url}/archive", timeout=5).read().decode()
    start = index.index(f"{base_url}/archive/")
    issue_page = index[start : index.index('"', start)]
    eml = next((folder / "outbox").rglob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    return [
        f"{base_url}/subscribe",
        f"{base_url}/archive",
        issue_page,
        unsubscribe,
        f"{base_url}/unsubscribe/not-a-valid-token",
    ]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_public_pages_have_no_axe_violations(site, browser, dark):
    folder, base_url = site
    pages = _public_pages(folder, base_url)
    assert len(pages) == 5
    found = {url: axe_violations(browser, url, dark) for url in pages}
    assert {url: v for url, v in found.items() if v} == {}


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_the_rendered_email_has_no_axe_violations(site, browser, tmp_path, dark):
    folder, _ = site
    eml = next((folder / "outbox").rglob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    page = tmp_path / "email.html"
    page.write_text(message.get_body(("html",)).get_content(), encoding="utf-8")
    # An email is a fragment of the client's page, not a page: the client supplies the
    # landmarks and the document's single <h1>, so those page-level rules do not apply.
    page_rules = ("region", "landmark-one-main", "page-has-heading-one")
    assert axe_violations(browser, page.as_uri(), dark, disabled=page_rules) == []
