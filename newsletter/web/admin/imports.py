"""Subscriber imports in the workspace, off the request: the upload is streamed (parsed as it
arrives, never held in memory nor copied through /tmp) into a private file beside the
database, queued as an import job, and answered at once with a 303 to the job's progress
page; `serve`'s import worker (`newsletter.imports.ImportWorker`, started and stopped with the
app) does the import. The progress page updates itself (a small script polling the job's
JSON; without JavaScript, a Refresh link): a `<meta http-equiv=refresh>` would be simpler,
but a page that reloads itself on a timer fails WCAG 2.2.1 (axe-core's `meta-refresh`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.exceptions import NotFound
from newsletter.imports import ImportWorker, imports_folder, new_upload, queue_import
from newsletter.store.imports import ImportJob
from newsletter.web.admin.base import Ctx, json_response
from newsletter.web.bodies import BodyTooLarge
from newsletter.web.state import web_state

# The largest CSV the workspace takes: about 1.6 million rows of a plain email,name list.
# What bounds it is the check of the whole file before anything is written (the addresses
# seen are held, for duplicates): docs/benchmarks.md has the server's memory at this size.
# Larger lists: `newsletter subscribers import FILE` on the server.
BODY_LIMIT_IMPORT = 64 * 1024 * 1024
TOO_LARGE = (
    f"The file is larger than {BODY_LIMIT_IMPORT // (1024 * 1024)} MB, the most the workspace "
    "imports at once. Split it into smaller files, or import it on the server with "
    "`newsletter subscribers import FILE`."
)
_FIELD_LIMIT = 64 * 1024
_MAX_FIELDS = 50
_FLUSH = 1024 * 1024


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start the import worker with the server (resuming a job a crash left running) and stop
    it between two chunks when the server stops."""
    state = app.state.web
    worker = ImportWorker(state.store, imports_folder(state.settings))
    await run_in_threadpool(worker.start)
    app.state.import_worker = worker
    try:
        yield
    finally:
        await run_in_threadpool(worker.stop)


def _worker(request: Request) -> ImportWorker | None:
    return getattr(request.app.state, "import_worker", None)


def _folder(request: Request) -> Path:
    worker = _worker(request)
    return worker.folder if worker is not None else imports_folder(web_state(request).settings)


class _Form:
    """A multipart form parsed as its bytes arrive: small fields kept, the first file part
    written straight into a new private upload file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fields: dict[str, str] = {}
        self.files: dict[str, tuple[str, Path]] = {}
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._filename: str | None = None
        self._value = bytearray()
        self._fd: int | None = None
        self._parts = 0

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._add("_header_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_header_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _add(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def _begin(self) -> None:
        self._parts += 1
        if self._parts > _MAX_FIELDS:
            raise ValueError("too many parts")
        self._headers, self._value, self._filename = {}, bytearray(), None

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is not None and self._name not in self.files:
            self._filename = filename.decode("utf-8", "replace")
            self._fd, path = new_upload(self.folder)
            self.files[self._name] = (self._filename, path)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._fd is not None:
            view = memoryview(data)[start:end]
            while view:
                view = view[os.write(self._fd, view) :]
        elif self._filename is None:
            self._value += data[start:end]
            if len(self._value) > _FIELD_LIMIT:
                raise ValueError("field too large")

    def _end(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        elif self._filename is None:
            self.fields.setdefault(self._name, self._value.decode("utf-8", "replace"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def read_import_form(
    request: Request, limit: int
) -> tuple[dict[str, str], dict[str, tuple[str, Path]]]:
    """`base.read_admin_form` for the import: the same refusals (over `limit` bytes, declared
    or sent), but the file part goes straight to the imports folder, a megabyte at a time
    from the thread pool. A refused or broken upload's file is removed here."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > limit:
        raise BodyTooLarge
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ValueError("not a multipart form")
    form = _Form(_folder(request))
    parser = MultipartParser(boundary, form.callbacks())
    received = 0
    buffered = bytearray()
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge
            buffered += chunk
            if len(buffered) >= _FLUSH:
                await run_in_threadpool(parser.write, bytes(buffered))
                buffered.clear()
        await run_in_threadpool(parser.write, bytes(buffered))
        parser.finalize()
    except BaseException:
        form.close()
        for _, path in form.files.values():
            path.unlink(missing_ok=True)
        raise
    form.close()
    return form.fields, form.files


def import_subscribers(ctx: Ctx) -> Response:
    """Queue the uploaded CSV and send the editor to its progress page."""
    upload = ctx.files.get("file")
    if not upload or not upload[1].stat().st_size:
        return ctx.redirect("/admin/subscribers", "Choose a CSV file to import.")
    name = Path(upload[0].replace("\\", "/")).name or "subscribers.csv"
    folder = upload[1].parent
    # Checks the header (NewsletterError: the 400 page, naming the line); the file is moved
    # to the job's name, so `editor_page` has nothing left to remove.
    job_id = queue_import(ctx.store, folder, upload[1], editor=ctx.editor.email, filename=name)
    worker = _worker(ctx.request)
    if worker is not None:
        worker.wake()
    return ctx.redirect(f"/admin/subscribers/imports/{job_id}")


def _job(ctx: Ctx) -> ImportJob:
    job = ctx.store.imports.get(int(ctx.request.path_params["job_id"]))
    if job is None:
        raise NotFound("no such import")
    return job


def import_page(ctx: Ctx) -> Response:
    job = _job(ctx)
    return ctx.page("admin/import.html", job=job, live=not job.finished)


def import_status(ctx: Ctx) -> Response:
    job = _job(ctx)
    return json_response(
        {
            "state": job.state.value,
            "rows_total": job.rows_total,
            "rows_done": job.rows_done,
            "added": job.added,
            "updated": job.updated,
            "skipped": job.skipped,
        }
    )
