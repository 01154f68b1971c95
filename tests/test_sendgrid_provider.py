"""The SendGrid provider through the real `sendgrid` library against the local
SendGrid-compatible server: contract, batching, every fault kind, and key hygiene."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime

import pytest

from newsletter import publish
from newsletter.delivery import SendContext, SendHooks, send_issue
from newsletter.providers import OutgoingBatch
from newsletter.providers.sendgrid import SendGridProvider
from newsletter.records import Recipient, Subscriber, SubscriberStatus
from newsletter.render import render_issue
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.subscribers import signing_secret
from newsletter.testing.sendgrid_server import SendGridServer, validate_mail_send
from newsletter.tokens import new_token
from tests.conftest import delivery_policy, run_cli

KEY = "SG.test-key-that-must-never-be-printed"
FAST = delivery_policy(
    batch_size=1000,
    max_retries=4,
    max_failed_batches=3,
    backoff_base=0.01,
    backoff_cap=0.05,
    concurrency=1,
)


@pytest.fixture
def server():
    with SendGridServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def sg_settings(folder, server):
    return load_settings(
        folder / "newsletter.toml",
        env={"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_HOST": server.url},
    )


@pytest.fixture
def sg_store(sg_settings):
    store = Store(sg_settings.database_url)
    yield store
    store.close()


def add_subscribers(store: Store, count: int) -> None:
    secret = signing_secret(store)
    store.subscribers.add(
        {"email": f"reader{i:05d}@example.com", "name": f"Reader {i}", "token": new_token(secret)}
        for i in range(count)
    )


def make_issue(store, settings, seed_path) -> int:
    publish.queue_add(store, settings, seed_path)
    picked, _ = publish.pick(store, settings, datetime.now(UTC))
    return publish.build_issue(store, settings, picked)


def provider(settings, timeout: float = 10.0, key: str = KEY) -> SendGridProvider:
    config = dataclasses.replace(settings.sendgrid, timeout_seconds=timeout)
    return SendGridProvider(settings, key, config)


def test_2500_subscribers_in_batches_each_exactly_once(server, sg_settings, sg_store, seed):
    add_subscribers(sg_store, 2500)
    issue_id = make_issue(sg_store, sg_settings, seed.path)
    report = send_issue(
        SendContext.of(sg_store, sg_settings, provider(sg_settings), policy=FAST), issue_id
    )
    assert report.status == "sent" and report.counts["sent"] == 2500
    assert server.stats().requests_accepted == 3  # 1000 + 1000 + 500
    messages = server.messages
    assert len(messages) == 2500
    assert len({m.to for m in messages}) == 2500
    by_batch = {}
    for m in messages:
        by_batch.setdefault(m.custom_args["batch"], set()).add(m.to)
    assert sorted(len(v) for v in by_batch.values()) == [500, 1000, 1000]
    # Per-subscriber values land in the right message.
    rows = {r.email: r for r in sg_store.subscribers.each()}
    tokens = {
        r.email: sg_store.subscribers.by_email(r.email).token for r in list(rows.values())[:50]
    }
    for m in messages:
        number = int(m.to[6:11])
        assert f"Hi Reader {number}," in m.html and f"Hi Reader {number}," in m.text
        assert m.to_name == f"Reader {number}"
        assert m.custom_args["issue_id"] == str(issue_id)
        assert m.categories == ["newsletter"]
        assert m.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        if m.to in tokens:
            url = f"{sg_settings.base_url}/unsubscribe/{tokens[m.to]}"
            assert m.headers["List-Unsubscribe"] == f"<{url}>"
            assert url in m.html and url in m.text
        assert not re.search(r"nl_[0-9a-f]{16}_", m.html + m.text)  # no placeholder left
        assert seed.words in m.subject
    # Each row's message id is SendGrid's X-Message-Id of its request.
    assert {r.message_id for r in sg_store.deliveries.in_state(issue_id, "sent")} == {
        m.message_id for m in messages
    }


def test_build_request_passes_the_contract_and_drops_what_sendgrid_refuses(sg_settings, seed_path):
    from newsletter.articles import read_article

    rendered = render_issue([read_article(seed_path)], sg_settings)
    recipients = (
        Recipient(1, "ann@example.com", "Doe; Ann, PhD", "t1.x"),
        Recipient(2, "ANN@example.com", "Ann Again", "t2.x"),
        Recipient(3, "bob@example.com", 'Bob "Bobby"\r\nBcc: x', "t3.x"),
        Recipient(4, "carl@example.com", "Carl", "t4.x"),
    )
    urls = tuple(f"https://n.example/unsubscribe/t{i}" for i in range(1, 4))
    batch = OutgoingBatch(1, 1, rendered, recipients, urls + ("https://n.example/" + "x" * 9990,))
    built = provider(sg_settings).build_request(batch)
    assert validate_mail_send(built.body) == []
    tos = [p["to"][0] for p in built.body["personalizations"]]
    assert [t["email"] for t in tos] == ["ann@example.com", "bob@example.com"]
    assert tos[0]["name"] == "Doe Ann PhD" and tos[1]["name"] == "Bob Bobby Bcc: x"
    assert built.skipped == {
        2: "duplicate address in the request",
        4: "substitutions over 10,000 bytes",
    }
    assert [c["type"] for c in built.body["content"]] == ["text/plain", "text/html"]


def test_the_encoded_body_is_ascii_json_holding_each_value_exactly(sg_settings, seed_path):
    """The body is our own encoding, not json.dumps of a dict: it must decode to exactly the
    values a dict would have held, whatever the characters."""
    from newsletter.articles import read_article
    from newsletter.render import substitution_values

    rendered = render_issue([read_article(seed_path)], sg_settings)
    recipients = (
        Recipient(7, "zoe@example.com", 'Zoë "Z" <z> \\ café 🐙', "t7.x"),
        Recipient(8, "tab@example.com", "Tab\tName\u2028", "t8.x"),
        Recipient(9, "plain@example.com", "", "t9.x"),
    )
    urls = tuple(f"https://n.example/unsubscribe/{r.token}?a=1&b=<2>" for r in recipients)
    built = provider(sg_settings).build_request(OutgoingBatch(3, 41, rendered, recipients, urls))
    assert built.encoded.isascii() and built.size == len(built.encoded.encode())
    body = json.loads(built.encoded)
    assert validate_mail_send(body) == []
    assert [p["to"][0]["email"] for p in body["personalizations"]] == [r.email for r in recipients]
    assert body["personalizations"][0]["to"][0]["name"] == "Zoë  Z  <z> \\ café 🐙".replace(
        "  ", " "
    )
    assert "name" not in body["personalizations"][2]["to"][0]
    for p, r, url in zip(body["personalizations"], recipients, urls, strict=True):
        assert p["substitutions"] == substitution_values(rendered, r.name, url)
        assert p["custom_args"] == {
            "issue_id": "3",
            "batch": "41",
            "subscriber_id": str(r.subscriber_id),
        }
        assert p["headers"]["List-Unsubscribe"] == f"<{url}>"
    assert body["content"] == [
        {"type": "text/plain", "value": rendered.text},
        {"type": "text/html", "value": rendered.html},
    ]
    assert body["subject"] and body["from"]["email"] == sg_settings.from_email


def test_rate_limit_waits_for_reset_then_sends(server, sg_settings, sg_store, seed_path):
    add_subscribers(sg_store, 10)
    issue_id = make_issue(sg_store, sg_settings, seed_path)
    server.faults.rate_limit = 2
    server.faults.rate_limit_reset_after = 0.5
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        import time

        time.sleep(seconds)

    report = send_issue(
        SendContext.of(
            sg_store, sg_settings, provider(sg_settings), policy=FAST, hooks=SendHooks(sleep=sleep)
        ),
        issue_id,
    )
    assert report.counts["sent"] == 10 and len(server.messages) == 10
    # Waited for X-RateLimit-Reset (whole epoch seconds, so up to 1 s later, plus jitter).
    assert len(slept) == 2 and all(0.2 < s < 2.5 for s in slept)


@pytest.mark.parametrize("fault", ["server_error", "bad_gateway", "unavailable"])
def test_5xx_are_retried_and_sent_once(server, sg_settings, sg_store, seed_path, fault):
    add_subscribers(sg_store, 30)
    issue_id = make_issue(sg_store, sg_settings, seed_path)
    setattr(server.faults, fault, 2)
    report = send_issue(
        SendContext.of(sg_store, sg_settings, provider(sg_settings), policy=FAST), issue_id
    )
    assert report.status == "sent" and report.counts["sent"] == 30
    assert len(server.messages) == 30 and len({m.to for m in server.messages}) == 30


def test_too_many_failures_pause_the_issue(server, sg_settings, sg_store, seed_path):
    add_subscribers(sg_store, 30)
    issue_id = make_issue(sg_store, sg_settings, seed_path)
    server.faults.server_error = 1000
    policy = dataclasses.replace(FAST, batch_size=10, max_retries=1, max_failed_batches=2)
    report = send_issue(
        SendContext.of(sg_store, sg_settings, provider(sg_settings), policy=policy), issue_id
    )
    assert report.status == "paused"
    assert "paused after 2 failed batches" in report.last_error
    assert report.counts["failed"] == 20 and report.counts["pending"] == 10
    assert server.messages == []


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("credits_exceeded", "refused the API key (401)"),
        ("forbidden", "refused the request (403)"),
    ],
)
def test_401_and_403_stop_the_issue_at_once(server, sg_settings, sg_store, seed_path, fault, words):
    add_subscribers(sg_store, 25)
    issue_id = make_issue(sg_store, sg_settings, seed_path)
    setattr(server.faults, fault, 1)
    policy = dataclasses.replace(FAST, batch_size=10)
    report = send_issue(
        SendContext.of(sg_store, sg_settings, provider(sg_settings), policy=policy), issue_id
    )
    assert report.status == "paused" and words in report.last_error
    assert report.counts["pending"] == 25 and server.messages == []
    if fault == "credits_exceeded":
        assert "credits" in report.last_error


def test_wrong_key_is_refused_and_never_printed(server, sg_settings, sg_store, seed_path):
    add_subscribers(sg_store, 5)
    issue_id = make_issue(sg_store, sg_settings, seed_path)
    wrong = "SG.wrong-key-also-secret"
    report = send_issue(
        SendContext.of(sg_store, sg_settings, provider(sg_settings, key=wrong), policy=FAST),
        issue_id,
    )
    assert report.status == "paused" and "401" in report.last_error
    assert wrong not in report.last_error


def test_400_fails_the_batch_with_sendgrids_messages_and_is_not_retried(server, folder, seed_path):
    settings = load_settings(
        folder / "newsletter.toml",
        env={"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_HOST": server.url},
    )
    settings = dataclasses.replace(settings, from_email="not-an-address")
    store = Store(settings.database_url)
    add_subscribers(store, 5)
    issue_id = make_issue(store, settings, seed_path)
    report = send_issue(SendContext.of(store, settings, provider(settings), policy=FAST), issue_id)
    assert report.counts["failed"] == 5
    assert "400" in report.last_error and "from.email" in report.last_error
    assert server.stats().requests_rejected == 1  # not retried
    store.close()


def test_413_splits_the_batch(folder, seed_path):
    with SendGridServer(api_key=KEY, max_body_bytes=120_000) as server:
        settings = load_settings(
            folder / "newsletter.toml",
            env={"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_HOST": server.url},
        )
        store = Store(settings.database_url)
        add_subscribers(store, 400)
        issue_id = make_issue(store, settings, seed_path)
        report = send_issue(
            SendContext.of(store, settings, provider(settings), policy=FAST), issue_id
        )
        assert report.status == "sent" and report.counts["sent"] == 400
        assert len(server.messages) == 400 and len({m.to for m in server.messages}) == 400
        assert server.stats().requests_accepted > 1
        store.close()


@pytest.mark.parametrize("fault", ["slow", "drop_after_accept"])
def test_timeout_or_drop_after_sending_is_uncertain_not_resent(
    server, sg_settings, sg_store, seed_path, fault
):
    add_subscribers(sg_store, 30)
    issue_id = make_issue(sg_store, sg_settings, seed_path)
    setattr(server.faults, fault, 1)
    server.faults.slow_seconds = 2.5
    policy = dataclasses.replace(FAST, batch_size=10)
    report = send_issue(
        SendContext.of(sg_store, sg_settings, provider(sg_settings, timeout=1.0), policy=policy),
        issue_id,
    )
    assert report.counts["uncertain"] == 10 and report.counts["sent"] == 20
    uncertain = {r.email for r in sg_store.deliveries.in_state(issue_id, "uncertain")}
    # The server did take that batch: resending it silently would have been a duplicate.
    if fault == "slow":
        import time

        time.sleep(2.0)
    delivered = [m.to for m in server.messages]
    assert len(delivered) == 30 and len(set(delivered)) == 30
    assert uncertain <= set(delivered)


def test_connection_refused_is_transient(sg_settings, sg_store, seed_path):
    add_subscribers(sg_store, 3)
    issue_id = make_issue(sg_store, sg_settings, seed_path)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    config = dataclasses.replace(sg_settings.sendgrid, api_host=f"http://127.0.0.1:{port}")
    prov = SendGridProvider(sg_settings, KEY, config)
    policy = dataclasses.replace(FAST, max_retries=2, max_failed_batches=1)
    report = send_issue(SendContext.of(sg_store, sg_settings, prov, policy=policy), issue_id)
    assert report.status == "paused" and "cannot reach the provider" in report.last_error
    # Issue 25.3: no refusal, so nothing failed for good; the rows wait for a resume.
    assert report.counts["pending"] == 3 and report.counts["uncertain"] == 0


def test_cli_send_with_debug_logging_never_shows_the_key(server, tmp_path, seed_path):
    env = {
        "NEWSLETTER_PROVIDER": "sendgrid",
        "SENDGRID_API_HOST": server.url,
        "SENDGRID_API_KEY": KEY,
    }
    run_cli(["init", "."], tmp_path)
    (tmp_path / "s.csv").write_text("email,name\nann@example.com,Ann\nbob@example.com,Bob\n")
    run_cli(["subscribers", "import", "s.csv"], tmp_path, env=env)
    run_cli(["queue", "add", str(seed_path)], tmp_path, env=env)
    out = run_cli(["-vv", "run", "--once"], tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "sent 2" in out.stdout
    assert KEY not in out.stdout + out.stderr
    assert len(server.messages) == 2

    test = run_cli(["-vv", "send-test", "1", "--to", "editor@example.com"], tmp_path, env=env)
    assert test.returncode == 0 and KEY not in test.stdout + test.stderr
    assert server.messages[-1].to == "editor@example.com"

    sandbox = run_cli(["-vv", "send-test", "1", "--sandbox"], tmp_path, env=env)
    assert sandbox.returncode == 0, sandbox.stderr
    assert "2 recipients, 0 problems" in sandbox.stdout and server.stats().sandbox_requests == 1
    assert len(server.messages) == 3  # the sandbox delivered nothing

    bad = run_cli(["-vv", "run", "--once"], tmp_path, env={**env, "SENDGRID_API_KEY": "SG.nope"})
    assert "SG.nope" not in bad.stdout + bad.stderr


def test_missing_key_is_a_clear_error(tmp_path):
    run_cli(["init", "."], tmp_path)
    out = run_cli(
        ["send-test", "1", "--to", "a@example.com"],
        tmp_path,
        env={"NEWSLETTER_PROVIDER": "sendgrid"},
    )
    assert out.returncode == 1 and "SENDGRID_API_KEY is not set" in out.stderr


def test_sign_up_confirmation_goes_through_sendgrid(server, sg_settings, monkeypatch):
    from newsletter.web.confirm import send_confirmation

    now = datetime.now(UTC)
    subscriber = Subscriber(
        7, "new@example.com", "New, Reader", SubscriberStatus.UNCONFIRMED, "abc.def", now, now
    )
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    message_id = send_confirmation(sg_settings, subscriber)
    [sent] = server.messages
    assert message_id == sent.message_id
    # Nothing the visitor typed (their name) goes into the confirmation email.
    assert sent.to == "new@example.com" and sent.to_name is None
    assert "New" not in sent.html and "New" not in sent.text
    assert sent.categories == ["confirmations"]
    assert f"{sg_settings.base_url}/confirm/abc.def" in sent.html
    assert f"{sg_settings.base_url}/confirm/abc.def" in sent.text
