"""Subscriber imports run off the request (`store.imports`, table `import_jobs`): one row per
uploaded file, claimed by one worker at a time, its progress committed in the transaction of
each chunk it counts (`record_chunk`), so a job resumed after a crash knows exactly which rows
are written."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.exceptions import StoreError
from newsletter.records import utcnow
from newsletter.store.schema import import_jobs

if TYPE_CHECKING:
    from newsletter.store import Store

# At most this many located messages are kept on a job (the page shows them all).
FIRST_MESSAGES = 20


class ImportState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class ImportJob:
    """One uploaded file's import, as the progress page and the worker read it. `messages`
    are the first errors of a failed job, or the first skipped rows of a finished one."""

    id: int
    editor: str
    filename: str
    state: ImportState
    rows_total: int | None  # known once the file is checked
    rows_done: int
    added: int
    updated: int
    skipped: int
    messages: tuple[str, ...]
    worker: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in (ImportState.DONE, ImportState.FAILED)


def _job(row: Any) -> ImportJob:
    return ImportJob(
        id=row.id,
        editor=row.editor,
        filename=row.filename,
        state=ImportState(row.state),
        rows_total=row.rows_total,
        rows_done=row.rows_done,
        added=row.added,
        updated=row.updated,
        skipped=row.skipped,
        messages=tuple(json.loads(row.errors or "[]")),
        worker=row.worker,
        attempts=row.attempts,
        created_at=row.created_at,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at,
    )


class ImportJobs:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, *, editor: str, filename: str, place: Callable[[int], None]) -> int:
        """A queued job; `place(id)` puts its file in place inside the same transaction, so no
        worker claims the job before its file is there (and a failed `place` leaves no job)."""
        with self._store.transaction() as conn:
            result = conn.execute(
                insert(import_jobs).values(
                    editor=editor[:320],
                    filename=filename[:255],
                    state=ImportState.QUEUED,
                    rows_done=0,
                    added=0,
                    updated=0,
                    skipped=0,
                    attempts=0,
                    created_at=utcnow(),
                )
            )
            (job_id,) = result.inserted_primary_key or (None,)
            if job_id is None:
                raise StoreError(f"{self._store.safe_url}: the import job got no id")
            job_id = int(job_id)
            place(job_id)
            return job_id

    def get(self, job_id: int) -> ImportJob | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(import_jobs).where(import_jobs.c.id == job_id)).first()
        return None if row is None else _job(row)

    def recent(self, limit: int = 5) -> list[ImportJob]:
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(import_jobs).order_by(import_jobs.c.id.desc()).limit(limit)
            ).all()
        return [_job(r) for r in rows]

    def running(self) -> list[ImportJob]:
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(import_jobs).where(import_jobs.c.state == ImportState.RUNNING)
            ).all()
        return [_job(r) for r in rows]

    def claim_next(self, worker: str) -> ImportJob | None:
        """The oldest queued job, now running under `worker`; None when none is queued or
        one is running already (one import at a time, whichever process runs it)."""
        now = utcnow()
        with self._store.transaction() as conn:
            other = import_jobs.alias("other_job")  # not correlated with the row picked
            running = exists().where(other.c.state == ImportState.RUNNING)
            oldest = conn.scalar(
                select(import_jobs.c.id)
                .where(import_jobs.c.state == ImportState.QUEUED, ~running)
                .order_by(import_jobs.c.id)
                .limit(1)
            )
            if oldest is None:
                return None
            claimed = conn.execute(
                update(import_jobs)
                .where(import_jobs.c.id == oldest, import_jobs.c.state == ImportState.QUEUED)
                .values(
                    state=ImportState.RUNNING,
                    worker=worker[:200],
                    attempts=import_jobs.c.attempts + 1,
                    started_at=now,
                    heartbeat_at=now,
                )
            ).rowcount
            if not claimed:
                return None
            row = conn.execute(select(import_jobs).where(import_jobs.c.id == oldest)).one()
        return _job(row)

    def checked(self, job_id: int, rows_total: int) -> None:
        """The file passed its check: this many rows are to be written."""
        self._set(job_id, rows_total=rows_total, heartbeat_at=utcnow())

    def heartbeat(self, job_id: int) -> None:
        self._set(job_id, heartbeat_at=utcnow())

    def record_chunk(
        self,
        conn: Connection,
        job_id: int,
        *,
        rows: int,
        added: int,
        updated: int,
        skipped: list[str],
    ) -> None:
        """Count one chunk, inside the transaction that wrote it (`conn`)."""
        kept = conn.scalar(select(import_jobs.c.errors).where(import_jobs.c.id == job_id))
        messages = json.loads(kept or "[]")
        values: dict[str, Any] = {
            "rows_done": import_jobs.c.rows_done + rows,
            "added": import_jobs.c.added + added,
            "updated": import_jobs.c.updated + updated,
            "skipped": import_jobs.c.skipped + len(skipped),
            "heartbeat_at": utcnow(),
        }
        if skipped and len(messages) < FIRST_MESSAGES:
            values["errors"] = json.dumps((messages + skipped)[:FIRST_MESSAGES])
        conn.execute(update(import_jobs).where(import_jobs.c.id == job_id).values(**values))

    def finish(
        self,
        job_id: int,
        state: ImportState,
        messages: list[str] | None = None,
        *,
        only_running: bool = False,
    ) -> None:
        """Done or failed; a failed job's messages say why (the first errors, located)."""
        values: dict[str, Any] = {"state": state, "finished_at": utcnow(), "worker": None}
        if messages is not None:
            values["errors"] = json.dumps(messages[:FIRST_MESSAGES])
        with self._store.transaction() as conn:
            query = update(import_jobs).where(import_jobs.c.id == job_id)
            if only_running:
                query = query.where(import_jobs.c.state == ImportState.RUNNING)
            conn.execute(query.values(**values))

    def requeue(self, job_id: int, *, attempt: bool) -> bool:
        """A running job queued again, to be resumed after the rows it has done: its worker
        is gone (`attempt`: that start counts towards the limit) or stopped between chunks
        (it does not). False if it was no longer running (another process got there first)."""
        values: dict[str, Any] = {"state": ImportState.QUEUED, "worker": None}
        if not attempt:
            values["attempts"] = import_jobs.c.attempts - 1
        with self._store.transaction() as conn:
            return bool(
                conn.execute(
                    update(import_jobs)
                    .where(import_jobs.c.id == job_id, import_jobs.c.state == ImportState.RUNNING)
                    .values(**values)
                ).rowcount
            )

    def _set(self, job_id: int, **values: Any) -> None:
        with self._store.transaction() as conn:
            conn.execute(update(import_jobs).where(import_jobs.c.id == job_id).values(**values))
