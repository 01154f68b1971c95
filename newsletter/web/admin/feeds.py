"""The feeds page: each `[[feeds]]` feed with its last fetch, next one and failure, and the
entries held because they do not fit the article contract, with the located errors (the
queue page lists the held articles too). Fetching is the scheduler's and `feeds poll`'s."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from starlette.responses import Response

from newsletter.feeds import feed_statuses
from newsletter.web.admin.base import Ctx

HELD_SHOWN = 100


@dataclass(frozen=True, kw_only=True)
class FeedLine:
    url: str
    every_minutes: int
    fetched_at: datetime | None
    next_at: datetime | None
    failures: int
    last_error: str | None
    queued: int
    held: int


def feeds_page(ctx: Ctx) -> Response:
    counts = ctx.store.feeds.counts()
    lines = []
    for status in feed_statuses(ctx.store, ctx.settings):
        feed, state = status.feed, status.state
        lines.append(
            FeedLine(
                url=feed.url,
                every_minutes=int(feed.every.total_seconds() // 60),
                fetched_at=state.fetched_at if state else None,
                next_at=state.next_at if state else None,
                failures=state.failures if state else 0,
                last_error=state.last_error if state else None,
                queued=counts.get((feed.url, "queued"), 0),
                held=counts.get((feed.url, "held"), 0),
            )
        )
    return ctx.page(
        "admin/feeds.html",
        feeds=lines,
        held=ctx.store.feeds.entries(("held",), HELD_SHOWN),
    )
