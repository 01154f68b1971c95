"""Human opens, machine opens and clicks per issue and hour (`store.engagement`, table `engagement_hours`): fed by
the event webhook inside its own transaction, read by the workspace's chart."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from newsletter.store.schema import engagement_hours

if TYPE_CHECKING:
    from newsletter.store import Store


class Engagement:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add_hours(self, counts: Iterable[tuple[int, str, datetime, int]]) -> None:
        """Add (issue_id, kind, hour, count) rows to the per-hour tallies."""
        params = list(counts)
        if not params:
            return
        with self._store.transaction() as conn:
            for issue_id, kind, hour, count in params:
                self._add_to_hour(conn, issue_id, kind, hour, count)

    def tally_hours(self, conn: Connection, counts: dict[tuple[int, int], list[int]]) -> None:
        """Add a webhook POST's [opens, clicks, machine opens] per (issue, hour as unix
        seconds), inside the POST's own transaction."""
        for (issue_id, start), tally in sorted(counts.items()):
            hour = datetime.fromtimestamp(start, UTC)
            for kind, count in zip(("open", "click", "machine"), tally, strict=True):
                if count:
                    self._add_to_hour(conn, issue_id, kind, hour, count)

    def _add_to_hour(
        self, conn: Connection, issue_id: int, kind: str, hour: datetime, count: int
    ) -> None:
        upsert = sqlite_insert if self._store.is_sqlite else pg_insert
        stmt = upsert(engagement_hours).values(issue_id=issue_id, kind=kind, hour=hour, count=count)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    engagement_hours.c.issue_id,
                    engagement_hours.c.kind,
                    engagement_hours.c.hour,
                ],
                set_={"count": engagement_hours.c.count + count},
            )
        )

    def series(self, issue_id: int) -> list[tuple[str, datetime, int]]:
        """(kind, hour, count) of an issue, oldest hour first: the chart's data."""
        with self._store.transaction(write=False) as conn:
            return [
                (kind, hour, count)
                for kind, hour, count in conn.execute(
                    select(
                        engagement_hours.c.kind, engagement_hours.c.hour, engagement_hours.c.count
                    )
                    .where(engagement_hours.c.issue_id == issue_id)
                    .order_by(engagement_hours.c.hour)
                )
            ]
