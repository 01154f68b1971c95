"""How long `newsletter segment count` takes at a million subscribers on SQLite.

    .venv/bin/python benchmarks/segment_count.py [--subscribers 1000000] [--repeat 3]

A fresh SQLite file made by the migrations, filled with `--subscribers` subscribers (95 %
active, 1 % paused, joined over two years, a third with a human open in the last 180 days)
and their tags (films on 40 %, series on 25 %, paused on 5 %), made inside SQLite for speed. Then, for each expression, the median of `--repeat` runs of `segments.count` (the
function the CLI and the workspace call: parse, check the tags, compile, one COUNT on a
fresh read transaction) and the count it found. Target: under 1 s each at 1,000,000.

With `--segment EXPR` (e.g. "tag:films"), an issue to that segment is then planned and sent
through the delivery log alone (claims of `--batch` and the provider's one id per batch, as
SendGrid answers; no request), and the database's growth printed (file + write-ahead log,
checkpointed): a segmented issue is planned as a definition (issue 22), so it grows by its
batch rows only. For comparison, the growth of the same audience frozen as one pending row
per reader (what planning wrote for a segment before migration 0017), measured on the same
database. Target: <= 1 MB per 1,000,000 recipients.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from newsletter import segments  # noqa: E402
from newsletter.records import RenderedIssue, utcnow  # noqa: E402
from newsletter.store import Store  # noqa: E402

EXPRESSIONS = (
    "",
    "tag:films",
    "tag:films and not tag:paused",
    "tag:films or tag:series",
    "joined<30d",
    "opened<90d",
    "(tag:films or tag:series) and opened<90d and not tag:paused",
)
TAGS = (("films", 0.40), ("series", 0.25), ("paused", 0.05))


def fill(store: Store, count: int) -> None:
    """The rows, made inside SQLite (a recursive CTE and random()): a million in seconds.
    `tag_text`, the copy segments read, is written as store/tags.py writes it."""
    now = utcnow().strftime("%Y-%m-%d %H:%M:%S")
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.executemany(
            "INSERT INTO tags (name, created_at) VALUES (?, ?)", [(n, now) for n, _ in TAGS]
        )
        cur.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO subscribers (id, email, email_key, name, status, token, created_at, "
            "updated_at, paused_until, last_opened_at, tag_text) "
            "SELECT i, 'reader' || i || '@example.org', 'reader' || i || '@example.org', '', "
            "CASE WHEN abs(random()) % 100 < 95 THEN 'active' ELSE 'unsubscribed' END, "
            "'t' || i, datetime(?, '-' || (abs(random()) % 730) || ' days'), ?, "
            "CASE WHEN abs(random()) % 100 = 0 THEN datetime(?, '+10 days') END, "
            "CASE WHEN abs(random()) % 3 = 0 "
            "THEN datetime(?, '-' || (abs(random()) % 180) || ' days') END, '' FROM n",
            (count, now, now, now, now),
        )
        for name, share in TAGS:
            cur.execute(
                "INSERT INTO subscriber_tags (tag, subscriber_id) SELECT ?, id FROM subscribers "
                "WHERE abs(random()) % 1000 < ?",
                (name, int(share * 1000)),
            )
        cur.execute(
            "UPDATE subscribers SET tag_text = ' ' || (SELECT group_concat(tag, ' ') FROM "
            "subscriber_tags WHERE subscriber_id = subscribers.id) || ' ' "
            "WHERE id IN (SELECT subscriber_id FROM subscriber_tags)"
        )
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def database_bytes(path: Path, store: Store) -> int:
    """The file and its write-ahead log, after a checkpoint that empties the log."""
    raw = store.engine.raw_connection()  # outside a transaction (the store's begin them)
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def send_segment(store: Store, path: Path, expr: str, batch: int) -> None:
    """Plan an issue to `expr`, send it through the delivery log, print the growth; then the
    growth of the same audience frozen as pending rows."""
    from sqlalchemy import and_, func, insert, literal, select

    from newsletter.store.audience import planned, receiving
    from newsletter.store.schema import deliveries, subscribers

    rendered = RenderedIssue(
        slug="bench",
        subject="s",
        preheader="p",
        html="<p>x</p>",
        text="x",
        archive_html="<p>x</p>",
        placeholder_nonce="n",
        view_url="",
    )
    checked = segments.audience(store, expr)
    before = database_bytes(path, store)
    started = time.perf_counter()
    issue = store.issues.create_issue(rendered, [], None, segment=checked)
    planned_s = time.perf_counter() - started
    sent = batches = 0
    started = time.perf_counter()
    while claimed := store.deliveries.claim(issue, batch, worker="bench"):
        store.deliveries.mark_sent(claimed, f"msg-{claimed.number}")
        sent += len(claimed.recipients)
        batches += 1
    send_s = time.perf_counter() - started
    growth = database_bytes(path, store) - before
    counts = store.deliveries.counts(issue)
    assert counts["sent"] == sent, counts
    per_million = growth / 1e6 * 1_000_000 / max(sent, 1)
    print(
        f"segment {expr!r}: planned in {planned_s * 1000:.0f} ms, {sent:,} recipients sent in "
        f"{batches:,} batches in {send_s:.1f} s ({sent / send_s:,.0f}/s through the log alone)"
    )
    print(
        f"database growth for this issue: {growth / 1e6:.3f} MB "
        f"({per_million:.3f} MB per 1,000,000 recipients; target <= 1 MB)"
    )
    # The same audience as one pending row per reader, as planning froze a segment before.
    from dataclasses import replace

    frozen = store.issues.create_issue(replace(rendered, slug="frozen"), [], None, segment="")
    before = database_bytes(path, store)
    with store.transaction() as conn:
        where = and_(receiving(utcnow()), planned(segments.anchored(checked, utcnow())))
        conn.execute(
            insert(deliveries).from_select(
                ["issue_id", "subscriber_id", "state", "attempts"],
                select(literal(frozen), subscribers.c.id, literal("pending"), literal(0)).where(
                    where
                ),
            )
        )
        rows = conn.scalar(
            select(func.count()).select_from(deliveries).where(deliveries.c.issue_id == frozen)
        )
    old = database_bytes(path, store) - before
    print(
        f"for comparison, the same {rows:,} readers frozen as pending rows (before 0017): "
        f"{old / 1e6:.1f} MB at planning alone ({old / 1e6 * 1_000_000 / max(rows, 1):.1f} MB "
        f"per 1,000,000)"
        + (f", {old / growth:,.0f}x the definition's whole send" if growth > 0 else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--segment", default="", help="plan and send an issue to it too")
    parser.add_argument("--batch", type=int, default=1000, help="recipients per claim")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        store = Store(f"sqlite:///{path}")
        try:
            started = time.perf_counter()
            fill(store, args.subscribers)
            print(
                f"filled {args.subscribers:,} subscribers with tags in "
                f"{time.perf_counter() - started:.1f} s"
            )
            for expr in EXPRESSIONS:
                times, found = [], 0
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    found = segments.count(store, expr)
                    times.append(time.perf_counter() - start)
                shown = expr or "(everyone)"
                print(
                    f"segment count {shown!r}: {found:,} in {statistics.median(times) * 1000:.0f} ms"
                    f" (median of {args.repeat})"
                )
            if args.segment:
                send_segment(store, path, args.segment, args.batch)
        finally:
            store.close()


if __name__ == "__main__":
    main()
