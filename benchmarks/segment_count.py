"""How long `newsletter segment count` takes at a million subscribers on SQLite.

    .venv/bin/python benchmarks/segment_count.py [--subscribers 1000000] [--repeat 3]

A fresh SQLite file made by the migrations, filled with `--subscribers` subscribers (95 %
active, 1 % paused, joined over two years, a third with a human open in the last 180 days)
and their tags (films on 40 %, series on 25 %, paused on 5 %), made inside SQLite for speed. Then, for each expression, the median of `--repeat` runs of `segments.count` (the
function the CLI and the workspace call: parse, check the tags, compile, one COUNT on a
fresh read transaction) and the count it found. Target: under 1 s each at 1,000,000.
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
from newsletter.records import utcnow  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
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
        finally:
            store.close()


if __name__ == "__main__":
    main()
