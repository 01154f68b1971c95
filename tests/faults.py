"""Helpers for the fault tests: a newsletter folder wired to the local SendGrid server, and
the real `newsletter` command started as a subprocess that the test can SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.settings import load_settings, write_default_config
from newsletter.store import Store
from newsletter.subscribers import signing_secret
from newsletter.tokens import new_token

KEY = "SG.fault-test-key"


def open_store(folder: Path) -> Store:
    """The store of a newsletter folder, as its newsletter.toml names it."""
    return Store(load_settings(folder / "newsletter.toml", env={}).database_url)


def make_folder(
    path: Path,
    server_url: str,
    *,
    subscribers: int,
    batch_size: int = 10,
    tick_ago: timedelta | None = None,
    grace_hours: float = 6,
    lease_seconds: float = 60,
    heartbeat_seconds: float = 0.5,
    database_url: str | None = None,
) -> dict:
    """A newsletter folder (SendGrid provider), its subscribers and one queued article. With
    `tick_ago`, the cadence has one tick that long ago (today or yesterday, Paris time); with
    `database_url`, the store is there instead of the folder's SQLite file."""
    write_default_config(path)
    config = path / "newsletter.toml"
    text = config.read_text()
    text = text.replace("batch_size = 1000", f"batch_size = {batch_size}")
    text = text.replace("max_retries = 5", "max_retries = 3")
    text = text.replace("grace_hours = 6", f"grace_hours = {grace_hours}")
    text = text.replace("lease_seconds = 60", f"lease_seconds = {lease_seconds}")
    text = text.replace("heartbeat_seconds = 10", f"heartbeat_seconds = {heartbeat_seconds}")
    if database_url is not None:  # e.g. a throwaway PostgreSQL database
        text = text.replace(
            'database_url = "sqlite:///newsletter.db"', f'database_url = "{database_url}"'
        )
    if tick_ago is not None:
        tick = datetime.now(ZoneInfo("Europe/Paris")) - tick_ago
        day = tick.strftime("%a").lower()
        text = re.sub(r"days = \[.*\]", f'days = ["{day}"]', text)
        text = text.replace('time = "09:00"', f'time = "{tick:%H:%M}"')
    config.write_text(text)
    settings = load_settings(config, env={})
    store = Store(settings.database_url)
    secret = signing_secret(store)
    store.subscribers.add(
        {"email": f"reader{i:04d}@example.com", "name": f"Reader {i}", "token": new_token(secret)}
        for i in range(subscribers)
    )
    (path / "issues" / "film.md").write_text(
        "---\ntitle: Fault Film (2020)\nyear: 2020\nrating: 7\nauthor: T\n---\n"
        "## Quick Recap\n\nIt begins.\n\n## The Ending\n\nIt ends.\n"
    )
    store.close()
    return {
        "NEWSLETTER_PROVIDER": "sendgrid",
        "SENDGRID_API_HOST": server_url,
        "SENDGRID_API_KEY": KEY,
        "NEWSLETTER_CONFIG": str(config),
    }


def start(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    full.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter.cli", *args],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)  # reaped, so its pid is really gone


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def check_exactly_once(server, store, issue_id, subscribers, uncertain_expected) -> None:
    """The promise after any crash: nobody got the issue twice, everyone has it or is listed
    as uncertain, and the uncertain ones are exactly those in flight at the crash."""
    delivered = [m.to for m in server.messages]
    assert len(delivered) == len(set(delivered)), "somebody got the issue twice"
    uncertain = {r.email for r in store.deliveries.in_state(issue_id, "uncertain")}
    assert uncertain == uncertain_expected
    everyone = {f"reader{i:04d}@example.com" for i in range(subscribers)}
    sent = {r.email for r in store.deliveries.in_state(issue_id, "sent")}
    assert sent | uncertain == everyone
    assert sent <= set(delivered)  # recorded as sent => SendGrid really took it
    assert set(delivered) - sent <= uncertain  # anything else delivered was in flight
