"""Tags and segments: the parser's errors by column, the compiled where-clause on real
SQLite and PostgreSQL databases, the CSV `tags` column, `subscribers tag/untag` and
`segment count` through the real CLI, planning through `[issue] segment` (`run --once` on
the outbox), and the workspace's live count over real HTTP."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from newsletter import segments
from newsletter.editors import add_editor
from newsletter.exceptions import SegmentError
from newsletter.records import SubscriberStatus, utcnow
from newsletter.store import Store
from newsletter.store.schema import deliveries, subscribers
from newsletter.subscribers import add_subscriber
from tests.conftest import run_cli, write
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401
from tests.test_admin_http import PASSWORD, Browser
from tests.test_web import live_web


# -- the parser ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "column", "words"),
    [
        ("tag:films and", 14, "ends early"),
        ("tag:films nd tag:x", 11, "unexpected 'nd'"),
        ("tag:films and tag:", 19, "ends early; expected a tag name"),
        ("joined<30x", 8, "a duration such as 30d"),
        ("opened = 3d", 8, "'<' or '>'"),
        ("(tag:a or tag:b", 16, "expected ')'"),
        ("tag:a)", 6, "unexpected ')'"),
        ("films", 1, "'tag:'"),
        ("tag:fi,lms", 7, "unexpected ','"),
        ("joined<999999999d", 8, "over 100 years"),
        ("", 1, "empty"),
    ],
)
def test_a_bad_expression_is_an_error_at_its_column(expr, column, words):
    with pytest.raises(SegmentError) as caught:
        segments.parse(expr)
    assert caught.value.column == column
    assert f"column {column}" in str(caught.value) and words in str(caught.value)


def test_the_grammar_knows_precedence_case_and_parentheses():
    tree = segments.parse("NOT tag:A and tag:b OR joined>2w")
    assert tree == segments.Any(
        (
            segments.All((segments.Not(segments.Tag("a", 5)), segments.Tag("b", 15))),
            segments.Age("joined", ">", timedelta(weeks=2), 24),
        )
    )
    grouped = segments.parse("tag:a and (tag:b or opened<36h)")
    assert isinstance(grouped, segments.All) and isinstance(grouped.parts[1], segments.Any)


def test_an_unknown_tag_is_named_at_its_column():
    with pytest.raises(SegmentError) as caught:
        segments.compile("tag:films and not tag:flims", known_tags={"films", "paused"})
    assert caught.value.column == 19
    assert "unknown tag 'flims' (tags: films, paused)" in str(caught.value)


# -- the where-clause on both backends ---------------------------------------------------------
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_segments_count_the_right_readers_on_both_backends(database_url):  # noqa: F811
    store = Store(database_url)
    try:
        now = utcnow()
        people = {
            name: add_subscriber(store, f"{name}@example.org", name)
            for name in ("old", "new", "opener", "paused", "gone", "plain")
        }
        store.tags.tag(["old@example.org", "new@example.org", "opener@example.org"], "films")
        store.tags.tag(["paused@example.org", "gone@example.org"], "films")
        store.tags.tag(["new@example.org"], "series")
        store.subscribers.suppress("gone@example.org", SubscriberStatus.UNSUBSCRIBED)
        store.subscribers.pause(people["paused"].id, now + timedelta(weeks=4))
        with store.transaction() as conn:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id.in_([people["old"].id, people["opener"].id]))
                .values(created_at=now - timedelta(days=200))
            )
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == people["opener"].id)
                .values(last_opened_at=now - timedelta(days=3))
            )
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == people["old"].id)
                .values(last_opened_at=now - timedelta(days=120))
            )
        expected = {
            "": 4,  # old, new, opener, plain (paused and gone receive nothing)
            "tag:films": 3,
            "tag:films and not tag:series": 2,
            "tag:films or tag:series": 3,
            "joined<30d": 2,  # new, plain
            "joined>30d": 2,  # old, opener
            "opened<90d": 1,  # opener
            "opened>90d": 3,  # old (120 days), new and plain (never)
            "not opened<90d": 3,
            "tag:films and opened<1w and joined>4w": 1,
        }
        assert {e: segments.count(store, e) for e in expected} == expected
        with pytest.raises(SegmentError, match="unknown tag 'comedy'"):
            segments.count(store, "tag:comedy")
        assert store.tags.counts() == {"films": 5, "series": 1}
        assert store.tags.untag(["new@example.org"], "series") == 1
        assert segments.count(store, "tag:series") == 0  # known, now carried by nobody
    finally:
        store.close()


# -- the CLI ---------------------------------------------------------------------------------
def test_csv_tags_tag_untag_and_count_through_the_cli(tmp_path):
    assert run_cli(["init"], tmp_path).returncode == 0
    csv = write(
        tmp_path / "list.csv",
        "email,name,tags\n"
        "a@example.org,A,films Horror\n"
        'b@example.org,B,"films,horror"\n'
        "c@example.org,C,films\n"
        "d@example.org,D,\n",
    )
    done = run_cli(["subscribers", "import", str(csv)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "imported 3, updated 0, rejected 1" in done.stdout
    # The comma inside quotes: located (file, line, address), with the fix.
    assert (
        f"{csv}:line 3: b@example.org: tags: 'films,horror' holds a comma: separate tags "
        'with spaces (e.g. "films horror")'
    ) in done.stderr

    def count(expr: str):
        return run_cli(["segment", "count", expr], tmp_path)

    assert count("tag:films").stdout.startswith("2 subscriber(s) match 'tag:films'")
    assert count("tag:films and not tag:horror").stdout.startswith("1 subscriber(s)")
    assert run_cli(["subscribers", "tag", "paused", "d@example.org"], tmp_path).returncode == 0
    assert count("not tag:paused").stdout.startswith("2 subscriber(s)")
    unknown = count("tag:films and tag:flims")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert "column 15: unknown tag 'flims' (tags: films, horror, paused)" in unknown.stderr
    nobody = count("tag:horror and tag:paused")
    assert nobody.returncode == 1
    assert nobody.stdout.startswith("0 subscriber(s)")
    assert "matches no active subscriber" in nobody.stderr
    bad = run_cli(["subscribers", "tag", "bad,tag", "a@example.org"], tmp_path)
    assert bad.returncode == 1 and "holds a comma" in bad.stderr
    missing = run_cli(["subscribers", "untag", "films", "zz@example.org"], tmp_path)
    assert missing.returncode == 1 and "no subscriber 'zz@example.org'" in missing.stderr
    assert run_cli(["subscribers", "untag", "films", "a@example.org"], tmp_path).returncode == 0
    assert count("tag:films").stdout.startswith("1 subscriber(s)")


def _set_segment(folder: Path, expr: str) -> None:
    config = folder / "newsletter.toml"
    text = config.read_text()
    assert 'segment = ""' in text  # `init` writes the key, empty (everyone)
    config.write_text(text.replace('segment = ""', f"segment = {expr!r}"))


def test_planning_sends_to_the_issue_segment_only(tmp_path):
    assert run_cli(["init", "--sample"], tmp_path).returncode == 0
    rows = "".join(f"r{n}@example.org,R{n},{'films' if n % 2 else 'series'}\n" for n in range(6))
    csv = write(tmp_path / "more.csv", "email,name,tags\n" + rows)
    assert run_cli(["subscribers", "import", str(csv)], tmp_path).returncode == 0
    _set_segment(tmp_path, "tag:films")
    plan = run_cli(["run", "--dry-run"], tmp_path)
    assert plan.returncode == 0, plan.stderr
    done = run_cli(["run", "--once"], tmp_path)
    assert done.returncode == 0, done.stderr
    sent = sorted((tmp_path / "outbox").glob("issue-*/*.eml"))
    assert len(sent) == 3, sent
    store = Store(f"sqlite:///{tmp_path / 'newsletter.db'}")
    try:
        emails = set(store.deliveries.sent_emails(1))
        with store.engine.connect() as conn:  # a definition: no row per reader (issue 22)
            own_rows = conn.scalar(select(func.count()).select_from(deliveries))
    finally:
        store.close()
    assert emails == {"r1@example.org", "r3@example.org", "r5@example.org"}
    assert own_rows == 0


def test_a_segment_matching_nobody_or_naming_an_unknown_tag_sends_nothing(tmp_path):
    assert run_cli(["init", "--sample"], tmp_path).returncode == 0
    csv = write(tmp_path / "t.csv", "email,name,tags\nx@example.org,X,films\n")
    assert run_cli(["subscribers", "import", str(csv)], tmp_path).returncode == 0
    assert run_cli(["subscribers", "tag", "series", "x@example.org"], tmp_path).returncode == 0
    assert run_cli(["subscribers", "untag", "series", "x@example.org"], tmp_path).returncode == 0
    _set_segment(tmp_path, "tag:series")
    # The dry run warns the same way, naming the segment (every reader is active).
    dry = run_cli(["run", "--dry-run"], tmp_path)
    assert dry.returncode == 1 and "would send to 0 active subscriber(s)" in dry.stdout
    assert "[issue] segment 'tag:series' matches no active subscriber" in dry.stderr
    assert "add readers with" not in dry.stderr, dry.stderr
    done = run_cli(["run", "--once"], tmp_path)
    assert done.returncode == 1
    assert "[issue] segment 'tag:series' matches no active subscriber" in done.stderr
    assert not list((tmp_path / "outbox").glob("issue-*/*.eml"))
    _set_segment_again = (tmp_path / "newsletter.toml").read_text()
    (tmp_path / "newsletter.toml").write_text(
        _set_segment_again.replace("segment = 'tag:series'", "segment = 'tag:serie'")
    )
    typo = run_cli(["run", "--once"], tmp_path)
    assert typo.returncode == 1 and "Traceback" not in typo.stderr
    assert "unknown tag 'serie'" in typo.stderr
    assert not list((tmp_path / "outbox").glob("issue-*/*.eml"))


# -- the workspace ---------------------------------------------------------------------------
def test_the_workspace_shows_tags_and_the_live_count(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as web:
        add_editor(web.store, "ed@example.com", PASSWORD)
        for n in range(3):
            add_subscriber(web.store, f"w{n}@example.org", f"W{n}")
        editor = Browser(web)
        assert editor.sign_in().status == 303
        page = editor.get("/admin/subscribers")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        for address in ("w0@example.org", "w1@example.org"):
            reply = editor.post(
                "/admin/subscribers/tag",
                {"csrf_token": token, "email": address, "tag": "Films", "action": "add"},
            )
            assert reply.status == 303
        page = editor.get("/admin/subscribers")
        assert '<td class="tags">films</td>' in page.text
        assert 'id="tag-names"' in page.text and "segment=tag%3Afilms" in page.text
        assert "every active subscriber" in page.text
        live = editor.get("/admin/subscribers?segment=tag%3Afilms+and+not+tag%3Apaused")
        assert "unknown tag &#39;paused&#39;" in live.text and 'id="segment-error"' in live.text
        live = editor.get("/admin/subscribers?segment=tag%3Afilms")
        assert 'id="segment-count"' in live.text and "matches <strong>2</strong>" in live.text
        reply = editor.post(
            "/admin/subscribers/tag",
            {"csrf_token": token, "email": "w0@example.org", "tag": "films", "action": "remove"},
        )
        assert reply.status == 303
        live = editor.get("/admin/subscribers?segment=tag%3Afilms")
        assert "matches <strong>1</strong>" in live.text
