"""Screenshots of the editors' workspace for the README, made from the bundled sample.

    .venv/bin/python scripts/admin_screenshots.py [OUT_DIR]   (default: docs/)

A throwaway folder made like `newsletter init --sample`, one issue sent to the outbox, the
real app served by uvicorn on 127.0.0.1, headless Chromium signed in as an editor; each page
is saved as OUT_DIR/admin-NAME.png (desktop width) and admin-NAME-phone.png (375 px).
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import uvicorn  # noqa: E402
from sqlalchemy import update  # noqa: E402

from newsletter import publish  # noqa: E402
from newsletter.editors import add_editor  # noqa: E402
from newsletter.providers import make_provider  # noqa: E402
from newsletter.records import utcnow  # noqa: E402
from newsletter.resources import sample_articles, sample_subscribers  # noqa: E402
from newsletter.screenshot import PHONE, View, _metrics, _start  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.store.schema import issues  # noqa: E402
from newsletter.subscribers import import_csv  # noqa: E402
from newsletter.web import create_app  # noqa: E402

DESKTOP = View("desktop", 1100)
PASSWORD = "screenshot password"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="admin-shots-"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    write_default_config(folder)
    settings = load_settings(folder / "newsletter.toml", env={"NEWSLETTER_BASE_URL": url})
    store = Store(settings.database_url)
    for article in sample_articles():
        publish.queue_add(store, settings, article)
    import_csv(store, sample_subscribers())
    issue_id = publish.publish_tick(
        publish.TickContext.of(store, settings, make_provider(settings))
    ).issue_id
    # Some engagement for the chart, as the SendGrid webhook would have recorded it.
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    tallies = [
        (issue_id, kind, hour - timedelta(hours=24 - h), n // (h + 1) + (kind == "open"))
        for h in range(24)
        for kind, n in (("open", 30), ("click", 8))
    ]
    store.engagement.add_hours(tallies)
    with store.transaction() as conn:  # the issue's totals, as the webhook keeps them
        conn.execute(
            update(issues)
            .where(issues.c.id == issue_id)
            .values(
                opens=sum(t[3] for t in tallies if t[1] == "open"),
                clicks=sum(t[3] for t in tallies if t[1] == "click"),
            )
        )
    add_editor(store, "editor@example.com", PASSWORD)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    profile = tempfile.mkdtemp(prefix="admin-shots-chromium-")
    driver = _start(profile)
    try:
        driver.get(f"{url}/admin/login")
        driver.find_element("id", "email").send_keys("editor@example.com")
        driver.find_element("id", "password").send_keys(PASSWORD)
        driver.find_element("css selector", "button[type=submit]").click()
        time.sleep(0.5)
        first = store.articles.queued()[0].id
        pages = {
            "queue": "/admin/queue",
            "preview": f"/admin/queue/{first}/preview",
            "issue": "/admin/issues/1",
            "schedule": "/admin/schedule",
            "subscribers": "/admin/subscribers",
        }
        for name, path in pages.items():
            for view, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", _metrics(view, 900))
                driver.get(url + path)
                time.sleep(0.3)
                height = driver.execute_script(
                    "return Math.min(document.documentElement.scrollHeight, 2400)"
                )
                driver.execute_cdp_cmd(
                    "Emulation.setDeviceMetricsOverride", _metrics(view, int(height))
                )
                target = out / f"admin-{name}{suffix}.png"
                target.write_bytes(driver.get_screenshot_as_png())
                print(target)
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
