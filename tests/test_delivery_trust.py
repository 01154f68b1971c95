"""Issue 10 (delivery side) and issue 15.8: no recipient stalls a send, keys are cleaned and
never printed, a refused key stops every request, and the outbox settles its own uncertain
rows after a crash. Real subprocesses, the real `sendgrid` library against the local server,
real SQLite (and PostgreSQL where the fixture runs it)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from newsletter import publish
from newsletter.delivery import SendContext, send_issue
from newsletter.providers.outbox import OutboxProvider
from newsletter.providers.sendgrid import SendGridProvider
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.subscribers import signing_secret
from newsletter.testing.sendgrid_server import SendGridServer
from newsletter.tokens import new_token
from tests.conftest import delivery_policy, run_cli
from tests.faults import KEY, kill9, make_folder, open_store, start, wait_until


@pytest.fixture
def server():
    with SendGridServer(api_key=KEY) as srv:
        yield srv


def add(store: Store, *emails: str) -> None:
    secret = signing_secret(store)
    store.subscribers.add({"email": e, "name": "X", "token": new_token(secret)} for e in emails)


def no_secret_shown(result, key: str) -> None:
    output = result.stdout + result.stderr
    assert key.strip() not in output
    assert "Traceback" not in output


# -- 10.4: keys -----------------------------------------------------------------------------
def test_key_with_a_trailing_cr_is_never_printed_and_nothing_is_uncertain(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=30, batch_size=10)
    env["SENDGRID_API_KEY"] = "SG.k\r"  # a wrong key from a CRLF .env file
    result = run_cli(["run", "--once"], tmp_path, env=env)
    assert result.returncode == 1
    no_secret_shown(result, "SG.k")
    assert "SENDGRID_API_KEY" in result.stdout + result.stderr
    store = open_store(tmp_path)
    counts = store.deliveries.counts(1)
    assert counts["pending"] == 30 and counts["uncertain"] == 0 and counts["in_flight"] == 0
    store.close()


def test_the_right_key_with_crlf_around_it_sends(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=30, batch_size=10)
    env["SENDGRID_API_KEY"] = f" {KEY}\r\n"
    result = run_cli(["run", "--once"], tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "sent 30" in result.stdout and len(server.messages) == 30


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("SENDGRID_API_KEY", "SG.inner space", ["run", "--once"]),
        ("SENDGRID_API_KEY", "SG.inner\rcr", ["run", "--once"]),
        ("SENDGRID_API_KEY", "SG.ключ", ["run", "--once"]),
        ("NEWSLETTER_SECRET_KEY", "s3cr3t\tkey", ["subscribers", "import", "u.csv"]),
    ],
)
def test_an_illegal_key_is_named_never_shown(tmp_path, server, variable, value, command):
    env = make_folder(tmp_path, server.url, subscribers=5)
    env[variable] = value
    (tmp_path / "u.csv").write_text("email,name\nnew@example.com,N\n")
    result = run_cli(command, tmp_path, env=env)
    assert result.returncode == 1
    assert variable in result.stderr and len(result.stderr.strip().splitlines()) == 1
    no_secret_shown(result, value.split()[0].split("\r")[0].split("\t")[0])
    assert server.request_log == []


def test_a_request_that_was_never_written_goes_back_to_pending(server, tmp_path):
    """A key the environment check never saw (handed to the provider directly): http.client
    refuses the header before writing anything, so nothing is uncertain; failed batches
    pause the issue with an error that does not quote the key."""
    make_folder(tmp_path, server.url, subscribers=40, batch_size=10)
    settings = load_settings(
        tmp_path / "newsletter.toml",
        env={"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_HOST": server.url},
    )
    store = Store(settings.database_url)
    publish.sync_queue(store, settings)
    picked, _ = publish.pick(store, settings, datetime.now(UTC))
    issue_id = publish.build_issue(store, settings, picked)
    provider = SendGridProvider(settings, KEY + "\r")
    policy = delivery_policy(batch_size=10, max_failed_batches=3, concurrency=2)
    report = send_issue(SendContext.of(store, settings, provider, policy=policy), issue_id)
    assert report.status == "paused"
    counts = store.deliveries.counts(issue_id)
    assert counts["pending"] == 40 and counts["uncertain"] == 0 and counts["in_flight"] == 0
    assert "nothing was sent" in (report.last_error or "")
    assert (
        KEY not in (report.last_error or "")
        and KEY not in store.issues.get_issue(issue_id).last_error
    )
    assert server.request_log == []
    store.close()


# -- 10.1: one recipient never stalls a send -------------------------------------------------
def test_sendgrid_refuses_a_non_ascii_local_part_alone(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=25, batch_size=10)
    store = open_store(tmp_path)
    add(store, "δοκιμή@example.com", "reader@bücher.example")
    store.close()
    result = run_cli(["run", "--once"], tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "sent 26, failed 1" in result.stdout
    delivered = {m.to for m in server.messages}
    assert len(delivered) == 26 and "reader@xn--bcher-kva.example" in delivered
    store = open_store(tmp_path)
    [failed] = store.deliveries.in_state(1, "failed")
    assert failed.email == "δοκιμή@example.com" and "SMTPUTF8" in failed.error
    store.close()
    # Not stuck and not "sent" either: the one failure is named, the rest went out.
    status = run_cli(["status", "1"], tmp_path, env=env).stdout
    assert "status: finished sending; 1 failed" in status and "SMTPUTF8" in status


def test_the_outbox_records_an_unwritable_address_as_failed_and_goes_on(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=12, batch_size=5)
    env["NEWSLETTER_PROVIDER"] = "outbox"
    store = open_store(tmp_path)
    add(store, "δοκιμή@example.com", "two@@example.com")
    store.close()
    result = run_cli(["run", "--once"], tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    store = open_store(tmp_path)
    counts = store.deliveries.counts(1)
    assert counts["sent"] == 13 and counts["failed"] == 1, counts
    [failed] = store.deliveries.in_state(1, "failed")
    assert failed.email == "two@@example.com" and failed.error
    store.close()
    files = list((tmp_path / "outbox" / "issue-1").glob("*.eml"))
    assert len(files) == 13
    # The next issue goes out too: nothing was left in flight.
    resend = run_cli(["resolve", "1", "--resend"], tmp_path, env=env)
    assert resend.returncode == 0 and "Traceback" not in resend.stderr


# -- 10.8: stop means stop --------------------------------------------------------------------
def test_after_a_401_no_request_starts(tmp_path, server, database_url):
    env = make_folder(
        tmp_path,
        server.url,
        subscribers=20_000,
        batch_size=1000,
        database_url=None if database_url.startswith("sqlite") else database_url,
    )
    env["SENDGRID_API_KEY"] = "SG.refused-key"
    result = run_cli(["run", "--once"], tmp_path, env=env)
    assert result.returncode == 1 and "paused" in result.stdout
    log = server.request_log
    assert log and all(r.status == 401 for r in log)
    first_answer = min(r.answered for r in log)
    started_later = [round((r.started - first_answer) * 1000, 1) for r in log]
    assert all(ms <= 0 for ms in started_later), f"requests started {started_later} ms after"
    store = open_store(tmp_path)
    counts = store.deliveries.counts(1)
    assert counts["pending"] == 20_000 and counts["in_flight"] == 0, counts
    store.close()


# -- 15.8: the outbox settles its own uncertain rows ---------------------------------------------
def test_outbox_settles_its_uncertain_rows_after_a_kill(tmp_path, server):
    subscribers = 2000
    env = make_folder(tmp_path, server.url, subscribers=subscribers, batch_size=250)
    env["NEWSLETTER_PROVIDER"] = "outbox"
    folder = tmp_path / "outbox" / "issue-1"
    proc = start(["run", "--once"], tmp_path, env)

    def mid_batch() -> bool:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return False
        return any(n.endswith(".tmp") for n in names) and any(n.endswith(".eml") for n in names)

    assert wait_until(mid_batch, timeout=60, interval=0.001)
    kill9(proc)
    store = open_store(tmp_path)
    caught = store.deliveries.counts(1)["in_flight"]
    assert caught, "killed between batches: nothing to settle"
    again = run_cli(["run", "--once"], tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "uncertain 0" in again.stdout
    counts = store.deliveries.counts(1)
    assert counts["sent"] == subscribers and counts["uncertain"] == 0, counts
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"{sid:08d}.eml" for sid in range(1, subscribers + 1)]  # no leftovers
    status = run_cli(["status", "1"], tmp_path, env=env)
    assert "status: sent" in status.stdout and "uncertain 0" in status.stdout
    store.close()


def test_outbox_settle_says_which_files_exist(tmp_path, server):
    make_folder(tmp_path, server.url, subscribers=0)
    settings = load_settings(tmp_path / "newsletter.toml", env={})
    outbox = OutboxProvider(settings)
    folder = outbox.path / "issue-7"
    folder.mkdir(parents=True)
    (folder / "00000001.eml").write_bytes(b"x")
    (folder / ".00000002.eml.999999999.tmp").write_bytes(b"half")  # a dead writer's
    assert outbox.settle_uncertain(7, [1, 2]) == {1: True, 2: False}
    assert [p.name for p in folder.iterdir()] == ["00000001.eml"]
    assert outbox.settle_uncertain(8, [1]) == {1: False}  # no folder: nothing delivered
