"""The library functions the CLI's commands stand on (issue 26): an issue's state as an
editor reads it, `status`'s choice of issue, the queue's moves by file name and whether a
`preview`/`check` SOURCE names a stored issue. The commands' output is tests/test_cli.py's."""

from __future__ import annotations

import pytest

from newsletter import publish
from newsletter.exceptions import NewsletterError
from newsletter.issue_state import IssueState, issue_detail, status_report
from newsletter.preview import names_an_issue
from newsletter.providers import make_provider
from newsletter.records import ArticleStatus, DeliveryState, IssueStatus
from newsletter.subscribers import add_subscriber, list_subscribers, remove_subscriber
from tests.conftest import write


def _state(status: str, **counts: int) -> IssueState:
    return IssueState(issue_id=7, status=status, counts=counts)


def test_a_finished_issue_with_uncertain_or_failed_rows_is_left_to_settle():
    assert _state(IssueStatus.SENT, sent=3).label == "sent"
    assert not _state(IssueStatus.SENT, sent=3).left_to_settle
    both = _state(IssueStatus.SENT, sent=1, uncertain=2, failed=1)
    assert both.left_to_settle and (both.uncertain, both.failed) == (2, 1)
    assert both.label == "finished sending; 2 uncertain left to settle, 1 failed"
    assert _state(IssueStatus.SENT, failed=1).label == "finished sending; 1 failed"
    # Still sending (or paused): uncertain rows are not yet the editor's to settle.
    paused = _state(IssueStatus.PAUSED, uncertain=2)
    assert paused.label == "paused" and not paused.left_to_settle and not paused.finished


def _send_one_issue(store, settings, path) -> int:
    publish.queue_add(store, settings, path)
    result = publish.publish_tick(publish.TickContext.of(store, settings, make_provider(settings)))
    assert result.report is not None
    return result.report.issue_id


def test_status_shows_the_named_issue_or_the_latest(store, settings, seed_path, tmp_path):
    assert status_report(store) == status_report(store, None)
    empty = status_report(store)
    assert empty.detail is None and empty.latest_of == 0
    for address in ("a@example.com", "b@example.com"):
        add_subscriber(store, address)
    first = _send_one_issue(store, settings, seed_path)
    second_file = write(
        tmp_path / "second.md",
        "---\ntitle: Second Film (1999)\n---\n## Quick Recap\n\nIt starts.\n"
        "\n## The Ending\n\nIt ends.\n",
    )
    second = _send_one_issue(store, settings, second_file)

    latest = status_report(store)
    assert latest.latest_of == 2 and latest.detail is not None
    assert latest.detail.issue.id == second and latest.detail.state.counts["sent"] == 2
    named = status_report(store, first)
    assert named.latest_of is None and named.detail is not None
    assert named.detail.issue.id == first

    ids = [r.subscriber_id for r in store.deliveries.in_state(first, DeliveryState.SENT)]
    store.deliveries.settle(first, DeliveryState.SENT, DeliveryState.UNCERTAIN, ids[:1])
    detail = issue_detail(store, first)
    assert [r.subscriber_id for r in detail.uncertain] == ids[:1] and detail.failed == []
    assert detail.state.label == "finished sending; 1 uncertain left to settle"
    with pytest.raises(NewsletterError, match="no issue 99"):
        status_report(store, 99)


def test_the_queue_moves_take_a_file_name_or_a_path(store, settings, seed_path, tmp_path):
    other = write(
        tmp_path / "other.md",
        "---\ntitle: Other Film (2001)\n---\n## Quick Recap\n\nIt starts.\n"
        "\n## The Ending\n\nIt ends.\n",
    )
    publish.queue_add(store, settings, seed_path)
    publish.queue_add(store, settings, other)
    order = lambda: [row.filename for row in store.articles.queued(held=True)]  # noqa: E731
    assert order() == [seed_path.name, "other.md"]
    assert publish.move_article(store, str(settings.issues_dir / "other.md"), up=True)
    assert order() == ["other.md", seed_path.name]
    assert not publish.move_article(store, "other.md", up=True)  # already first

    row = store.articles.queued()[0]
    store.articles.hold_article(row.id, "line 3: no recap")
    held = publish.held_articles(store)
    assert [(h.filename, h.status, h.last_error) for h in held] == [
        ("other.md", ArticleStatus.HELD, "line 3: no recap")
    ]
    assert publish.release_article(store, "issues/other.md").filename == "other.md"
    assert publish.held_articles(store) == []
    assert publish.remove_article(store, seed_path.name).filename == seed_path.name
    assert order() == ["other.md"]
    assert (settings.issues_dir / seed_path.name).exists()  # the file is kept


def test_subscribers_are_listed_by_status_and_removed(store):
    add_subscriber(store, "a@example.com")
    add_subscriber(store, "b@example.com", status="unsubscribed")
    assert [s.email for s in list_subscribers(store)] == ["a@example.com", "b@example.com"]
    assert [s.email for s in list_subscribers(store, "unsubscribed")] == ["b@example.com"]
    remove_subscriber(store, "a@example.com")
    assert [s.email for s in list_subscribers(store)] == ["b@example.com"]


def test_a_lone_number_names_an_issue_unless_a_file_has_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert names_an_issue(("3",))
    assert not names_an_issue(("3", "4")) and not names_an_issue(("article.md",))
    write(tmp_path / "3", "a file called 3 is an article")
    assert not names_an_issue(("3",))
