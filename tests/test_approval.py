"""Approval before a scheduled send ([issue] approval = "required"), through the real
workspace (two editors signed in over HTTP, CSRF tokens), the tick, the scheduler's wake-up,
the alerts through the outbox, and the real CLI in subprocesses."""

from __future__ import annotations

import email
import email.policy
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter import alerts, approval, publish
from newsletter.delivery import SendingLease
from newsletter.editors import add_editor
from newsletter.exceptions import ApprovalRefused, AwaitingApproval, NotFound
from newsletter.providers import make_provider
from newsletter.records import ArticleStatus, DeliveryState, IssueStatus
from newsletter.settings import write_default_config
from newsletter.subscribers import add_subscriber
from tests.conftest import run_cli
from tests.test_admin_http import PASSWORD, Browser, csrf_of
from tests.test_web import SAMPLE_ARTICLES, serve_folder

ED1, ED2 = "ed1@example.com", "ed2@example.com"
# A Tuesday 09:00 in Paris (the default cadence: tue and fri at 09:00 Europe/Paris).
SLOT = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
ARTICLE = (SAMPLE_ARTICLES / "003_the-orchard-accounts.md").read_text(encoding="utf-8")


def approval_folder(folder: Path, *, self_approval: bool = False, deadline: int = 60) -> Path:
    """A newsletter folder whose issues need approval (the generated file, edited)."""
    write_default_config(folder)
    config = folder / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('approval = "none"', 'approval = "required"')
    text = text.replace("approval_deadline_minutes = 60", f"approval_deadline_minutes = {deadline}")
    if self_approval:
        text = text.replace("allow_self_approval = false", "allow_self_approval = true")
    assert 'approval = "required"' in text
    config.write_text(text, encoding="utf-8")
    return folder


@contextmanager
def team(tmp_path: Path, **options):
    """The workspace served live, two editors, one active reader."""
    with serve_folder(approval_folder(tmp_path, **options)) as live:
        add_editor(live.store, ED1, PASSWORD)
        add_editor(live.store, ED2, PASSWORD)
        add_subscriber(live.store, "reader@example.com", "Reader")
        yield live


def signed_in(live, address: str) -> Browser:
    browser = Browser(live)
    assert browser.sign_in(address).status == 303
    return browser


def queue_through_workspace(browser: Browser) -> None:
    page = browser.get("/admin/queue")
    reply = browser.post(
        "/admin/queue/add",
        {"csrf_token": csrf_of(page), "markdown": ARTICLE, "filename": "orchard.md"},
    )
    assert reply.status == 303, reply.text[:500]


def ctx_of(live) -> publish.TickContext:
    return publish.TickContext.of(live.store, live.settings, make_provider(live.settings))


def sent_files(live) -> list[Path]:
    return sorted(live.settings.outbox_path.glob("issue-*/*.eml"))


def test_the_tick_prepares_an_issue_that_waits_and_only_another_editor_approves_it(tmp_path):
    with team(tmp_path) as live:
        ed1, ed2 = signed_in(live, ED1), signed_in(live, ED2)
        queue_through_workspace(ed1)
        assert live.store.articles.queued()[0].queued_by == live.store.editors.by_email(ED1).id

        result = publish.publish_tick(ctx_of(live), SLOT, scheduled_for=SLOT)
        issue_id = result.awaiting
        assert issue_id is not None and result.report is None and result.issue_id is None
        issue = live.store.issues.get_issue(issue_id)
        assert issue.status == IssueStatus.AWAITING_APPROVAL and issue.scheduled_for == SLOT
        assert live.store.deliveries.total(issue_id) == 0  # nothing planned, nothing sent
        assert sent_files(live) == []
        assert live.get(f"/archive/{issue.slug}").status == 404  # not public either

        # The editor who queued it sees the email and the reason they cannot approve.
        page = ed1.get(f"/admin/issues/{issue_id}")
        assert page.status == 200
        assert f'src="/admin/issues/{issue_id}/email"' in page.text
        assert 'id="self-approval"' in page.text and 'id="approve"' not in page.text
        assert '<p class="meta" id="queued-by">Queued by ed1@example.com</p>' in page.text
        frame = ed1.get(f"/admin/issues/{issue_id}/email")
        assert frame.status == 200 and "Orchard" in frame.text
        refused = ed1.post(f"/admin/issues/{issue_id}/approve", {"csrf_token": csrf_of(page)})
        assert refused.status == 409 and "another editor approves it" in refused.text
        # Without the session's CSRF token, nothing either.
        assert ed2.post(f"/admin/issues/{issue_id}/approve", {}).status == 403
        forged = ed2.post(f"/admin/issues/{issue_id}/approve", {"csrf_token": csrf_of(page)})
        assert forged.status == 403  # ed1's token is not ed2's
        assert live.store.issues.issue_status(issue_id) == IssueStatus.AWAITING_APPROVAL

        # A tick at the slot, unapproved: nothing goes out.
        later = publish.publish_tick(ctx_of(live), SLOT, scheduled_for=SLOT + timedelta(days=3))
        assert later.awaiting == issue_id and later.report is None and sent_files(live) == []

        page = ed2.get(f"/admin/issues/{issue_id}")
        assert 'id="approve"' in page.text
        done = ed2.post(f"/admin/issues/{issue_id}/approve", {"csrf_token": csrf_of(page)})
        assert done.status == 303
        assert live.store.issues.issue_status(issue_id) == IssueStatus.APPROVED
        [review] = approval.reviews(live.store, issue_id)
        assert (review.decision, review.editor_email) == ("approved", ED2)
        shown = ed2.get(f"/admin/issues/{issue_id}").text
        assert re.search(r"approved</span> by ed2@example\.com · \w{3} \d{4}-\d\d-\d\d", shown)

        # Approved twice: refused, and the log keeps one entry.
        again = ed2.post(f"/admin/issues/{issue_id}/approve", {"csrf_token": csrf_of(page)})
        assert again.status == 409 and "approved" in again.text
        assert len(approval.reviews(live.store, issue_id)) == 1

        sent = publish.publish_tick(
            ctx_of(live), SLOT + timedelta(days=7), scheduled_for=SLOT + timedelta(days=7)
        )
        assert sent.issue_id == issue_id and sent.report is not None and sent.report.ok
        assert live.store.deliveries.counts(issue_id)[DeliveryState.SENT] == 1
        assert len(sent_files(live)) == 1
        with pytest.raises(ApprovalRefused, match="is sent: only an issue awaiting approval"):
            approval.approve(live.store, live.settings, issue_id, ED2)


def test_a_rejection_holds_the_articles_with_the_reason_and_is_logged(tmp_path):
    with team(tmp_path) as live:
        ed1, ed2 = signed_in(live, ED1), signed_in(live, ED2)
        queue_through_workspace(ed1)
        issue_id = publish.publish_tick(ctx_of(live), SLOT, scheduled_for=SLOT).awaiting
        page = ed2.get(f"/admin/issues/{issue_id}")
        empty = ed2.post(
            f"/admin/issues/{issue_id}/reject", {"csrf_token": csrf_of(page), "reason": "  "}
        )
        assert empty.status == 400 and "needs a reason" in empty.text
        reply = ed2.post(
            f"/admin/issues/{issue_id}/reject",
            {"csrf_token": csrf_of(page), "reason": "The recap names the wrong sister."},
        )
        assert reply.status == 303
        assert live.store.issues.issue_status(issue_id) == IssueStatus.REJECTED
        [row] = live.store.articles.queued(held=True)
        assert row.status == ArticleStatus.HELD and row.issue_id is None
        assert row.last_error == f"rejected by {ED2}: The recap names the wrong sister."
        queue = ed1.get("/admin/queue").text
        assert "The recap names the wrong sister." in queue
        [review] = approval.reviews(live.store, issue_id)
        assert (review.decision, review.reason) == ("rejected", "The recap names the wrong sister.")
        assert "rejected</span> by ed2@example.com" in ed1.get(f"/admin/issues/{issue_id}").text
        # The held article is not taken by the next tick; released, it makes a new issue.
        assert publish.publish_tick(ctx_of(live), SLOT, scheduled_for=SLOT).awaiting is None
        live.store.articles.release_article(row.filename)
        fresh = publish.publish_tick(
            ctx_of(live), SLOT + timedelta(days=3), scheduled_for=SLOT + timedelta(days=3)
        )
        assert fresh.awaiting not in (None, issue_id)


def test_self_approval_only_when_allowed(tmp_path):
    with team(tmp_path, self_approval=True) as live:
        ed1 = signed_in(live, ED1)
        queue_through_workspace(ed1)
        issue_id = publish.publish_tick(ctx_of(live), SLOT, scheduled_for=SLOT).awaiting
        page = ed1.get(f"/admin/issues/{issue_id}")
        assert 'id="approve"' in page.text
        assert (
            ed1.post(f"/admin/issues/{issue_id}/approve", {"csrf_token": csrf_of(page)}).status
            == 303
        )
        assert live.store.issues.issue_status(issue_id) == IssueStatus.APPROVED


def test_the_scheduler_prepares_ahead_alerts_before_the_deadline_and_sends_once_approved(
    tmp_path,
):
    with team(tmp_path, deadline=90) as live:
        queue_through_workspace(signed_in(live, ED1))
        ctx = ctx_of(live)
        monday = SLOT - timedelta(days=1)
        with SendingLease(live.store, live.settings.schedule.lease) as lease:
            publish.scheduled_work(ctx, lease, monday)
        [issue] = live.store.issues.prepared_issues()
        assert issue.scheduled_for == SLOT and issue.status == IssueStatus.AWAITING_APPROVAL

        # Two hours before the slot: not yet the deadline, nobody is alerted.
        assert (
            alerts.send_alerts(live.store, live.settings, ctx.provider, SLOT - timedelta(hours=2))
            == []
        )
        # What every workspace page shows (approval.notices reads this list) at the same
        # instants: nothing two hours before, the issue from 90 minutes before.
        assert alerts.approval_alerts(live.store, live.settings, SLOT - timedelta(hours=2)) == []
        [shown] = alerts.approval_alerts(live.store, live.settings, SLOT - timedelta(minutes=90))
        assert shown.link.endswith(f"/admin/issues/{issue.id}")
        assert shown.subject.startswith(f"Issue {issue.id} awaits approval")
        # 89 minutes before: every editor, once, by email; and on every workspace page.
        close = SLOT - timedelta(minutes=89)
        sent = alerts.send_alerts(live.store, live.settings, ctx.provider, close)
        assert [a.key for a in sent] == [f"approval-missing:{issue.id}"]
        mails = sorted((live.settings.outbox_path / "alerts").glob("*.eml"))
        recipients = sorted(
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"]
            for p in mails
        )
        assert recipients == [ED1, ED2]
        assert f"newsletter approve {issue.id}" in mails[0].read_text()
        assert alerts.send_alerts(live.store, live.settings, ctx.provider, close) == []

        # The slot comes unapproved: nothing is sent, the tick is served, the issue waits.
        with SendingLease(live.store, live.settings.schedule.lease) as lease:
            publish.scheduled_work(ctx, lease, SLOT + timedelta(minutes=1))
        assert sent_files(live) == []
        assert live.store.issues.issue_status(issue.id) == IssueStatus.AWAITING_APPROVAL
        approval.approve(live.store, live.settings, issue.id, ED2)
        with SendingLease(live.store, live.settings.schedule.lease) as lease:
            publish.scheduled_work(ctx, lease, SLOT + timedelta(minutes=2))
        assert live.store.issues.issue_status(issue.id) == IssueStatus.SENT
        assert len(sent_files(live)) == 1


def test_every_workspace_page_shows_an_issue_nearing_its_slot_unapproved(tmp_path):
    """The workspace reads the real clock: a deadline of a week puts the next slot (the
    cadence has two a week) inside it; with no deadline, a coming slot is not shown."""
    for deadline, shown in ((7 * 24 * 60, True), (0, False)):
        folder = tmp_path / str(deadline)
        folder.mkdir()
        with team(folder, deadline=deadline) as live:
            queue_through_workspace(signed_in(live, ED1))
            with SendingLease(live.store, live.settings.schedule.lease) as lease:
                publish.scheduled_work(ctx_of(live), lease)
            [issue] = live.store.issues.prepared_issues()
            browser = signed_in(live, ED2)
            for path in ("/admin/queue", "/admin/schedule", "/admin/subscribers"):
                page = browser.get(path).text
                assert ('id="approval-notices"' in page) is shown, path
                assert (
                    f'<a href="/admin/issues/{issue.id}">Issue {issue.id} awaits' in page
                ) is shown


def test_run_refuses_an_unapproved_issue_naming_the_command_and_the_cli_decides(tmp_path):
    folder = approval_folder(tmp_path)
    assert (
        run_cli(["editors", "add", ED1], folder, input=f"{PASSWORD}\n{PASSWORD}\n").returncode == 0
    )
    assert (
        run_cli(["editors", "add", ED2], folder, input=f"{PASSWORD}\n{PASSWORD}\n").returncode == 0
    )
    (folder / "readers.csv").write_text("email,name\nreader@example.com,Reader\n")
    assert run_cli(["subscribers", "import", "readers.csv"], folder).returncode == 0
    assert (
        run_cli(
            ["queue", "add", str(SAMPLE_ARTICLES / "003_the-orchard-accounts.md")], folder
        ).returncode
        == 0
    )

    run = run_cli(["run", "--once"], folder)
    assert run.returncode == 1
    assert "issue 1 awaits approval" in run.stderr and "newsletter approve 1" in run.stderr
    assert "Traceback" not in run.stderr
    assert not list((folder / "outbox").glob("issue-*/*.eml"))
    again = run_cli(["run", "--once"], folder)
    assert again.returncode == 1 and "issue 1 awaits approval" in again.stderr

    nobody = run_cli(["approve", "1", "--editor", "who@example.com"], folder)
    assert nobody.returncode == 1 and "no editor 'who@example.com'" in nobody.stderr
    missing = run_cli(["approve", "7", "--editor", ED1], folder)
    assert missing.returncode == 1 and "no issue 7" in missing.stderr
    approved = run_cli(["approve", "1"], folder, env={"NEWSLETTER_EDITOR": ED2})
    assert approved.returncode == 0, approved.stderr
    assert "approved issue 1" in approved.stdout
    sent = run_cli(["run", "--once"], folder)
    assert sent.returncode == 0, sent.stderr
    assert len(list((folder / "outbox").glob("issue-*/*.eml"))) == 1
    late = run_cli(["reject", "1", "--editor", ED2, "--reason", "too late"], folder)
    assert late.returncode == 1 and "issue 1 is sent" in late.stderr


def test_the_library_refuses_what_the_rules_refuse(tmp_path):
    with team(tmp_path) as live:
        queue_through_workspace(signed_in(live, ED1))
        with pytest.raises(AwaitingApproval, match="newsletter approve 1") as refused:
            publish.publish_tick(ctx_of(live), SLOT)
        assert refused.value.issue_id == 1
        with pytest.raises(ApprovalRefused, match="ed1@example.com queued an article of issue 1"):
            approval.approve(live.store, live.settings, 1, ED1)
        with pytest.raises(NotFound):
            approval.reject(live.store, live.settings, 1, "x@example.com", "why")
        assert approval.reviews(live.store, 1) == []


def test_the_scheduler_says_a_tick_waits_for_approval_rather_than_an_empty_queue(tmp_path):
    from newsletter.scheduler import SchedulerRunner

    with team(tmp_path) as live:
        queue_through_workspace(signed_in(live, ED1))
        said: list[str] = []
        runner = SchedulerRunner(live.store, live.settings, said.append)
        result = publish.publish_tick(ctx_of(live), SLOT, scheduled_for=SLOT)
        runner._report(result, "cadence")
        assert said == [
            f"tick {SLOT:%Y-%m-%d %H:%M %Z}: {approval.awaiting_notice(result.awaiting)}"
        ]
        assert "queue empty" not in " ".join(said)


def _cli_team(folder: Path) -> Path:
    approval_folder(folder)
    for address in (ED1, ED2):
        added = run_cli(["editors", "add", address], folder, input=f"{PASSWORD}\n{PASSWORD}\n")
        assert added.returncode == 0, added.stderr
    (folder / "readers.csv").write_text("email,name\nreader@example.com,Reader\n")
    assert run_cli(["subscribers", "import", "readers.csv"], folder).returncode == 0
    return folder


def test_queue_add_records_the_editor_and_approve_holds_the_cli_to_the_rule(tmp_path):
    """`queue add --editor` (or NEWSLETTER_EDITOR) is checked against the editors and
    recorded, so the CLI keeps the rule the workspace keeps: not approved by who queued it."""
    folder = _cli_team(tmp_path)
    article = str(SAMPLE_ARTICLES / "003_the-orchard-accounts.md")
    stranger = run_cli(["queue", "add", article, "--editor", "who@example.com"], folder)
    assert stranger.returncode == 1 and "no editor 'who@example.com'" in stranger.stderr
    assert "Traceback" not in stranger.stderr
    assert not (folder / "issues" / "003_the-orchard-accounts.md").exists()  # nothing queued

    added = run_cli(["queue", "add", article], folder, env={"NEWSLETTER_EDITOR": ED1})
    assert added.returncode == 0, added.stderr
    assert f"recorded as queued by {ED1}: another editor approves its issue" in added.stderr
    assert run_cli(["run", "--once"], folder).returncode == 1  # prepared, awaiting approval

    own = run_cli(["approve", "1", "--editor", ED1], folder)
    assert own.returncode == 1 and f"{ED1} queued an article of issue 1" in own.stderr
    anonymous = run_cli(["approve", "1"], folder)
    assert anonymous.returncode == 1 and "say who you are: --editor EMAIL" in anonymous.stderr
    assert "Traceback" not in anonymous.stderr + own.stderr
    approved = run_cli(["approve", "1", "--editor", ED2], folder)
    assert approved.returncode == 0, approved.stderr
    [review] = run_reviews(folder, 1)
    assert (review.decision, review.editor_email) == ("approved", ED2)


def test_an_article_queued_by_nobody_named_may_be_approved_by_any_editor(tmp_path):
    """Without --editor the CLI says it records nobody; no editor is then kept from
    approving (the rule of approval.queued_by), and an anonymous re-queue of an article an
    editor queued keeps that editor."""
    folder = _cli_team(tmp_path)
    article = str(SAMPLE_ARTICLES / "003_the-orchard-accounts.md")
    added = run_cli(["queue", "add", article], folder)
    assert added.returncode == 0, added.stderr
    assert "recorded as queued by no editor (say --editor EMAIL" in added.stderr
    assert "any editor may approve its issue" in added.stderr
    again = run_cli(["queue", "add", article, "--editor", ED1], folder)
    assert again.returncode == 0 and ED1 in again.stderr
    assert run_cli(["queue", "add", article], folder).returncode == 0  # anonymous edit
    assert run_cli(["run", "--once"], folder).returncode == 1
    own = run_cli(["approve", "1", "--editor", ED1], folder)
    assert own.returncode == 1 and "queued an article of issue 1" in own.stderr

    other = _cli_team(tmp_path / "other")
    assert run_cli(["queue", "add", article], other).returncode == 0
    assert run_cli(["run", "--once"], other).returncode == 1
    anyone = run_cli(["approve", "1", "--editor", ED1], other)
    assert anyone.returncode == 0, anyone.stderr


def run_reviews(folder: Path, issue_id: int):
    from newsletter.settings import load_settings
    from newsletter.store import Store

    store = Store(load_settings(folder / "newsletter.toml").database_url)
    try:
        return approval.reviews(store, issue_id)
    finally:
        store.close()


def test_the_issue_page_says_when_no_editor_queued_its_articles(tmp_path):
    with team(tmp_path) as live:
        publish.queue_add(
            live.store, live.settings, SAMPLE_ARTICLES / "003_the-orchard-accounts.md"
        )
        issue_id = publish.publish_tick(ctx_of(live), SLOT, scheduled_for=SLOT).awaiting
        page = signed_in(live, ED1).get(f"/admin/issues/{issue_id}").text
        assert 'id="queued-by">Queued by no editor named' in page
        assert "any editor may approve it" in page and 'id="approve"' in page
