"""`run --dry-run` on an issue that waits: for its approval, its next reader-time wave or a
[sending] cap's next window, each said as what it waits for (and until when), never as
"interrupted"; the real command in subprocesses, on the real clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newsletter.settings import load_settings
from newsletter.store import Store
from tests.conftest import run_cli
from tests.faults import make_folder
from tests.test_approval import ED2, _cli_team
from tests.test_readertime_delivery import OUTBOX, _past_and_future_waves
from tests.test_web import SAMPLE_ARTICLES


def _dry_run(folder, env=None) -> str:
    done = run_cli(["run", "--dry-run"], folder, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_an_issue_waiting_for_its_next_wave_is_said_to_wait_for_it(tmp_path):
    settings, store, issue_id, next_at = _past_and_future_waves(tmp_path)
    before = _dry_run(tmp_path, OUTBOX)
    # The past wave is due: run would go on with it now.
    assert f"would finish interrupted issue {issue_id}: 4 recipient(s) left" in before
    assert run_cli(["run"], tmp_path, env=OUTBOX).returncode == 0
    out = _dry_run(tmp_path, OUTBOX)
    local = next_at.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")
    assert (
        f"issue {issue_id} waits for its next reader-time wave at {local}: none due now, "
        "2 recipient(s) left" in out
    )
    assert "interrupted" not in out
    store.close()


def test_an_issue_held_by_a_cap_is_said_to_wait_for_its_window(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=5)
    config = tmp_path / "newsletter.toml"
    text = config.read_text().replace('provider = "sendgrid"', 'provider = "outbox"')
    config.write_text(text.replace("max_per_hour = 0", "max_per_hour = 3"))
    env = {"NEWSLETTER_PROVIDER": "outbox"}
    assert run_cli(["run"], tmp_path, env=env).returncode == 75  # stopped by the cap
    out = _dry_run(tmp_path, env)
    settings = load_settings(config, env=env)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    local = hour.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")
    assert (
        f"issue 1 waits for the hourly cap's next window at {local}: nothing may go before "
        "it, 2 recipient(s) left" in out
    )
    assert "interrupted" not in out
    store = Store(settings.database_url)
    assert store.meta.get("warmup_started") is None  # the dry run used nothing up
    assert store.deliveries.counts(1)["sent"] == 3
    store.close()


def test_an_issue_awaiting_approval_is_said_to_wait_for_it_and_an_approved_one_to_go(tmp_path):
    folder = _cli_team(tmp_path)
    article = str(SAMPLE_ARTICLES / "003_the-orchard-accounts.md")
    assert run_cli(["queue", "add", article], folder).returncode == 0
    first = _dry_run(folder)
    assert "would prepare an issue for 1 active subscriber(s) and send nothing" in first
    assert "newsletter approve ISSUE --editor EMAIL" in first
    assert run_cli(["run", "--once"], folder).returncode == 1
    waiting = _dry_run(folder)
    assert "would refuse (exit 1): issue 1 awaits approval" in waiting
    assert "newsletter approve 1 --editor EMAIL" in waiting
    assert "nothing to send: no queued article is due" not in waiting
    assert run_cli(["approve", "1", "--editor", ED2], folder).returncode == 0
    approved = _dry_run(folder)
    assert "would send approved issue 1 (The Orchard Accounts" in approved
    assert "to 1 active subscriber(s) now" in approved
