"""The feed samples of tests/data/feeds/, and the ones too large to keep as files: built
from the WordPress sample's first item."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

FEEDS = Path(__file__).parent / "data" / "feeds"


def sample(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def wordpress_with(entries: int) -> bytes:
    """The WordPress sample with `entries` items (ids ?p=1..n, a day apart, newest first)."""
    text = sample("wordpress.xml").decode("utf-8")
    item = re.search(r"\t<item>.*?</item>\n", text, re.S)
    assert item is not None
    start = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
    items = []
    for n in range(entries, 0, -1):
        when = format_datetime(start - timedelta(hours=entries - n))
        items.append(
            item.group(0)
            .replace("?p=1412", f"?p={n}")
            .replace("The Salt Road (2025)", f"The Salt Road {n} (2025)")
            .replace("Fri, 04 Dec 2026 07:00:00 +0000", when)
        )
    head, tail = text[: item.start()], text[text.index("\t</channel>") :]
    return (head + "".join(items) + tail).encode("utf-8")
