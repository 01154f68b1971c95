"""Segments: who an issue goes to, written as a small expression and compiled to SQL.

    tag:films and not tag:paused      readers tagged films, and not paused
    joined<30d                        joined less than 30 days ago (joined>30d: longer ago)
    opened<90d                        opened an issue in the last 90 days (human opens only)
    (tag:films or tag:series) and opened<4w

Parsed by lark (an LALR grammar, not regular expressions) into a small typed tree
(`newsletter.segment_syntax`, re-exported here), checked (every tag must exist: a typo is an
error naming its column, not an empty audience), then compiled to one SQLAlchemy Core
where-clause on `subscribers` (`store.audience`). Units: h, d, w. `and` binds tighter than
`or`; `not` tighter than both. Keywords are case-insensitive.

`audience` is what planning uses: the checked expression goes to
`store.issues.create_issue(segment=...)`, and `store.deliveries.plan` keeps it in the plan row
with its relative ages anchored at the planning instant (`joined<30d@2026-12-07T12:00:00Z`);
each claim evaluates it over the next id range, with the rule every issue keeps (active, not
paused).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, true

from newsletter.exceptions import SegmentError
from newsletter.records import utcnow
from newsletter.segment_syntax import (
    GRAMMAR,
    Age,
    All,
    Any,
    Node,
    Not,
    Tag,
    anchored,
    parse,
    tags_of,
    to_text,
)
from newsletter.store.audience import clause
from newsletter.tags import normalize_tag

if TYPE_CHECKING:
    from newsletter.store import Store

__all__ = [
    "GRAMMAR",
    "Age",
    "All",
    "Any",
    "Node",
    "Not",
    "Tag",
    "anchored",
    "audience",
    "compile",
    "count",
    "parse",
    "tags_of",
    "to_text",
]


def _checked(expr: str, known_tags: Collection[str]) -> Node:
    """The tree, every tag it names among `known_tags` (else a SegmentError at its column)."""
    node = parse(expr)
    known = set(known_tags)
    for tag in tags_of(node):
        if tag.name not in known:
            listed = ", ".join(sorted(known)[:12]) or "none yet"
            raise SegmentError(
                f"segment {expr!r}: column {tag.column}: unknown tag {tag.name!r} (tags: {listed})",
                tag.column,
            )
    return node


def compile(  # noqa: A001 - the name the planning code and the brief use
    expr: str, *, known_tags: Collection[str] | None = None, now: datetime | None = None
) -> ColumnElement[bool]:
    """The where-clause on `subscribers` of a segment. With `known_tags` (the store's tags),
    a tag not among them is a SegmentError at its column. An empty expression is everyone."""
    if not expr.strip():
        return true()
    node = parse(expr) if known_tags is None else _checked(expr, known_tags)
    return clause(node, now or utcnow())


def audience(store: Store, expr: str, *, setting: str = "") -> str:
    """The segment with the store's tags checked, as planning takes it ("" for everyone).
    `setting` (e.g. "[issue] segment") goes in front of an error, to say where it is written."""
    if not expr.strip():
        return ""
    try:
        _checked(expr, store.tags.names())
    except SegmentError as exc:
        raise SegmentError(f"{setting}: {exc}" if setting else str(exc), exc.column) from None
    return expr.strip()


def count(store: Store, expr: str) -> int:
    """How many subscribers an issue sent now would go to (active, not paused, in the
    segment): `newsletter segment count` and the workspace's live count."""
    checked = audience(store, expr)
    return store.subscribers.count_receiving(compile(checked) if checked else None)


@dataclass(frozen=True, kw_only=True)
class Tagged:
    """What tagging (or untagging) did: the tag as stored, how many subscribers changed."""

    tag: str
    changed: int


def tag_subscribers(store: Store, emails: Collection[str], tag: str) -> Tagged:
    """Give `tag` (held to the tag rule) to the subscribers `emails`: all of them, or none
    if one is unknown. `changed`: those who did not have it."""
    name = normalize_tag(tag)
    return Tagged(tag=name, changed=store.tags.tag(emails, name))


def untag_subscribers(store: Store, emails: Collection[str], tag: str) -> Tagged:
    """Take `tag` from the subscribers `emails`; the tag stays known, so segments naming it
    keep working. `changed`: those who had it."""
    name = normalize_tag(tag)
    return Tagged(tag=name, changed=store.tags.untag(emails, name))
