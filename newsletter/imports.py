"""Subscriber imports off the request: the workspace's upload is kept in a private folder beside
the database, a row of `import_jobs` is queued, and a worker thread of `serve` imports the
queued files one at a time (`ImportWorker`).

A job first checks the whole file (`subscribers.check_csv`): a bad header, a quoting or
encoding error or any bad row refuses the whole file, with the first errors located by line,
and nothing is imported. Then it writes the rows in chunked transactions
(`subscribers.write_chunk`), each committing its rows and the job's progress together.

A job left `running` by a process that is gone (killed, crashed, the machine restarted) is
**resumed**: queued again and continued after the rows its committed progress counts, so
nothing is written twice and the counts stay exact. A file that takes the server down again
and again is not retried forever: after `MAX_ATTEMPTS` starts it fails with that reason. A
graceful stop (SIGTERM, Ctrl-C) stops between chunks and queues the job again the same way.
The file is removed when its job is done or failed.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from newsletter.exceptions import NewsletterError
from newsletter.processes import process_gone
from newsletter.records import utcnow
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.store.imports import ImportJob, ImportState
from newsletter.subscribers import IMPORT_CHUNK, check_csv, read_csv_rows, valid_chunks, write_chunk

log = logging.getLogger(__name__)

# A job started this many times without finishing (each start after a crash) fails instead.
MAX_ATTEMPTS = 3
# A job running on another machine whose progress has not moved for this long is taken as
# abandoned (on this machine, a gone process is told at once: `processes.process_gone`).
STALE_AFTER = timedelta(minutes=10)
# An upload half received when its server stopped, removed at the next start after this.
PART_MAX_AGE = timedelta(hours=1)
# Errors shown for a refused file: the first ones (their count is said).
SHOWN_PROBLEMS = 20
UPLOAD_SUFFIX = ".part"
# Rows per transaction in serve: fewer than the CLI's IMPORT_CHUNK, so a public sign-up
# waits for at most a short write (docs/benchmarks.md has both).
WORKER_CHUNK = 1000


def imports_folder(settings: Settings) -> Path:
    """The private folder (0700) the uploads wait in: beside a SQLite database file
    (`newsletter.db-imports`), else in the newsletter's folder (`imports`). With `serve` on
    several machines sharing one PostgreSQL database, this folder must be shared too."""
    url = make_url(settings.database_url)
    database = url.database if url.get_backend_name() == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).with_name(Path(database).name + "-imports")
    else:
        folder = settings.root / "imports"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
    except OSError as exc:
        raise NewsletterError(f"{folder}: cannot make the imports folder: {exc.strerror}") from None
    return folder


def new_upload(folder: Path) -> tuple[int, Path]:
    """A new, empty file (0600) for an upload being received: its descriptor and path."""
    path = folder / f"upload-{secrets.token_hex(8)}{UPLOAD_SUFFIX}"
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path


def job_file(folder: Path, job_id: int) -> Path:
    return folder / f"job-{job_id}.csv"


def located(message: str, path: Path, filename: str) -> str:
    """A library message about the kept file, naming the file as the editor sent it."""
    return message.replace(str(path), filename)


def queue_import(store: Store, folder: Path, upload: Path, *, editor: str, filename: str) -> int:
    """Queue the received `upload` (in `folder`) as a job; its id. The header and the first
    rows are checked at once, so a file that is not a subscriber list is refused here
    (NewsletterError naming the file and line) and never queued."""
    try:
        next(iter(read_csv_rows(upload)))
    except StopIteration:
        raise NewsletterError(f"{filename}: no rows after the header; nothing to import") from None
    except NewsletterError as exc:
        raise NewsletterError(located(str(exc), upload, filename)) from None

    def place(job_id: int) -> None:  # inside the job's transaction: no worker sees it before
        os.replace(upload, job_file(folder, job_id))

    return store.imports.create(editor=editor, filename=filename, place=place)


def run_job(
    store: Store,
    folder: Path,
    job: ImportJob,
    *,
    chunk: int = IMPORT_CHUNK,
    stopping: Callable[[], bool] = lambda: False,
) -> ImportState:
    """Check the job's file, then write it a chunk at a time after the rows already done;
    the state it is left in (queued again when `stopping` said so between chunks)."""
    path = job_file(folder, job.id)
    if not path.exists():
        store.imports.finish(
            job.id,
            ImportState.FAILED,
            [f"{job.filename}: the uploaded file is gone from {folder}; upload it again"],
        )
        return ImportState.FAILED
    try:
        check = check_csv(path, progress=lambda _: store.imports.heartbeat(job.id))
        if check.problems:
            count = len(check.problems)
            summary = (
                f"{job.filename}: {count} of {check.rows} rows have a problem; nothing was "
                "imported. Correct them and upload the file again."
            )
            shown = [f"{job.filename}:{p}" for p in check.problems[:SHOWN_PROBLEMS]]
            store.imports.finish(job.id, ImportState.FAILED, [summary, *shown])
            return ImportState.FAILED
        store.imports.checked(job.id, check.rows)
        for rows in valid_chunks(path, check, chunk=chunk, skip=job.rows_done):
            write_chunk(
                store,
                rows,
                record=lambda conn, counts: store.imports.record_chunk(
                    conn,
                    job.id,
                    rows=counts.rows,
                    added=counts.added,
                    updated=counts.updated,
                    skipped=[f"{job.filename}:{p}" for p in counts.skipped],
                ),
            )
            if stopping():
                store.imports.requeue(job.id, attempt=False)
                return ImportState.QUEUED
        store.imports.finish(job.id, ImportState.DONE)
        return ImportState.DONE
    except NewsletterError as exc:
        store.imports.finish(job.id, ImportState.FAILED, [located(str(exc), path, job.filename)])
        return ImportState.FAILED


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(job: ImportJob, *, at_start: bool) -> bool:
    """Whether a running job's process is gone: on this machine, its process id names no
    process (or names this one at start: a restart that was given the same id, as in a
    container); elsewhere, its progress has not moved for STALE_AFTER."""
    host, _, pid = (job.worker or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return at_start
        return process_gone(int(pid))
    seen = job.heartbeat_at or job.started_at or job.created_at
    return utcnow() - seen > STALE_AFTER


def recover(store: Store, folder: Path, *, at_start: bool = False) -> list[int]:
    """Resume the jobs left running by a process that is gone (or fail those started
    MAX_ATTEMPTS times, or whose file is gone); the ids handled."""
    handled: list[int] = []
    for job in store.imports.running():
        if not _abandoned(job, at_start=at_start):
            continue
        if job.attempts >= MAX_ATTEMPTS:
            reason = (
                f"{job.filename}: the server stopped during this import {job.attempts} times; "
                f"{job.rows_done} rows were imported (added {job.added}, updated "
                f"{job.updated}). Import the rest with `newsletter subscribers import`, or "
                "upload a smaller file"
            )
            store.imports.finish(job.id, ImportState.FAILED, [reason], only_running=True)
            job_file(folder, job.id).unlink(missing_ok=True)
        elif not store.imports.requeue(job.id, attempt=True):
            continue
        log.warning(
            "import %s (%s) was left running by %s: %s after %s rows",
            job.id,
            job.filename,
            job.worker,
            "failed" if job.attempts >= MAX_ATTEMPTS else "resumed",
            job.rows_done,
        )
        handled.append(job.id)
    return handled


def sweep(store: Store, folder: Path) -> None:
    """Remove what a stop left behind: uploads half received long ago, files of jobs that
    finished (a stop between the finish and the removal)."""
    limit = time.time() - PART_MAX_AGE.total_seconds()
    for path in folder.glob(f"upload-*{UPLOAD_SUFFIX}"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except OSError:
            continue
    for path in folder.glob("job-*.csv"):
        number = path.stem.removeprefix("job-")
        job = store.imports.get(int(number)) if number.isdigit() else None
        if job is None or job.finished:
            path.unlink(missing_ok=True)


class ImportWorker:
    """`serve`'s import thread: one job at a time, woken by a new upload or every `poll`
    seconds (jobs queued by another process, abandoned ones to resume)."""

    def __init__(
        self, store: Store, folder: Path, *, chunk: int = WORKER_CHUNK, poll: float = 2.0
    ) -> None:
        self.store, self.folder, self.chunk, self.poll = store, folder, chunk, poll
        self.name = this_worker()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        recover(self.store, self.folder, at_start=True)
        sweep(self.store, self.folder)
        self._thread = threading.Thread(target=self._loop, name="newsletter-imports", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the chunk in progress; a job cut short is queued again (resumed at
        the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            job: ImportJob | None = None
            try:
                job = self.store.imports.claim_next(self.name)
                if job is not None:
                    state = run_job(
                        self.store, self.folder, job, chunk=self.chunk, stopping=self._stop.is_set
                    )
                    if state is not ImportState.QUEUED:
                        job_file(self.folder, job.id).unlink(missing_ok=True)
                    continue
                recover(self.store, self.folder)
            except Exception:  # the thread must outlive a database hiccup
                log.exception("the import worker hit an error; trying again shortly")
                if job is not None:
                    self._fail(job)
            self._wake.wait(self.poll)
            self._wake.clear()

    def _fail(self, job: ImportJob) -> None:
        try:
            self.store.imports.finish(
                job.id,
                ImportState.FAILED,
                [f"{job.filename}: unexpected error during the import (see serve's log)"],
            )
            job_file(self.folder, job.id).unlink(missing_ok=True)
        except Exception:
            log.exception("could not mark import %s failed", job.id)
