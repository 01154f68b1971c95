"""Public pages rendered once per publication version and served with HTTP validators.

The archive index, the issue pages and the feed change only when the set of published issues
changes, and every such change bumps the store's publication counter in the same transaction
(`newsletter.store.publication`). A `PageCache` keeps each page's bytes, strong ETag and
Last-Modified for the version it was rendered for; a request reads the current version (one
primary-key look-up, shared by the requests that arrived while the previous look-up ran) and
rebuilds a page only when the version moved. Several `serve` processes on one database thus
agree, and a cancel made by the CLI is seen by each server at its next request.

Any public page can use it: `await public_pages(request).get(key, build)` then
`respond(request, page)` (with a 304 for a matching If-None-Match or If-Modified-Since).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.records import PublicationVersion
from newsletter.store import Store

# Shared caches may keep a public page a minute; after that they revalidate (a cheap 304), so
# a cancelled issue is gone from every cache within a minute.
PUBLIC_CACHE_CONTROL = "public, max-age=60"
# Pages for slugs that exist; past this many, pages of older versions are dropped first.
MAX_PAGES = 2_000

RawHeaders = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class CachedPage:
    """One rendered page with the headers of its 200 and of its 304, encoded once."""

    body: bytes
    etag: str
    last_modified: datetime
    headers: RawHeaders
    not_modified_headers: RawHeaders


def http_date(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


def cached_page(
    body: bytes,
    media_type: str,
    last_modified: datetime,
    *,
    cache_control: str = PUBLIC_CACHE_CONTROL,
    headers: Mapping[str, str] | None = None,
) -> CachedPage:
    """A page whose ETag is the hash of its bytes: equal bytes, equal ETag, whichever process
    or version rendered them (so a version bump that changes nothing still answers 304)."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    validators = [
        ("etag", etag),
        ("last-modified", http_date(last_modified)),
        ("cache-control", cache_control),
    ]
    full = [
        ("content-type", media_type),
        ("content-length", str(len(body))),
        *validators,
        *((name.lower(), value) for name, value in (headers or {}).items()),
    ]
    return CachedPage(body, etag, last_modified, _encode(full), _encode(validators))


def _encode(headers: Iterable[tuple[str, str]]) -> RawHeaders:
    return tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers)


class _Prebuilt(Response):
    """A response whose headers were encoded when the page was rendered."""

    def __init__(self, status_code: int, headers: RawHeaders, body: bytes) -> None:
        self.status_code = status_code
        self.body = body
        self.raw_headers = list(headers)
        self.background = None


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison, a list of tags, or `*`."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def not_modified(request: Request, page: CachedPage) -> bool:
    """Whether the client's copy is current. If-None-Match wins over If-Modified-Since, which
    HTTP dates compare to the second."""
    if request.method not in ("GET", "HEAD"):
        return False
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, page.etag)
    since = request.headers.get("if-modified-since")
    if not since:
        return False
    try:
        moment = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # RFC 9110 13.1.3: an invalid date is ignored
    if moment.tzinfo is None:
        return False
    return page.last_modified.replace(microsecond=0) <= moment


def respond(request: Request, page: CachedPage) -> Response:
    """The page, or a 304 with its validators when the client's copy is current."""
    if not_modified(request, page):
        return _Prebuilt(304, page.not_modified_headers, b"")
    return _Prebuilt(200, page.headers, page.body)


class _Coalesced:
    """Reads the publication version in the thread pool, at most one read at a time: requests
    arriving while a read runs share the next one. Every request still gets a value read after
    it arrived, so a change committed before the request is always seen."""

    def __init__(self, read: Callable[[], PublicationVersion]) -> None:
        self._read = read
        self._next: asyncio.Future[PublicationVersion] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def get(self) -> PublicationVersion:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            # Waiters may all be gone (client disconnects): never leave an error unretrieved.
            self._next.add_done_callback(lambda f: f.cancelled() or f.exception())
        waiting = self._next
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._run())
        return await asyncio.shield(waiting)

    async def _run(self) -> None:
        while self._next is not None:
            batch, self._next = self._next, None
            try:
                batch.set_result(await run_in_threadpool(self._read))
            except Exception as exc:  # every waiter of this read answers 500
                batch.set_exception(exc)


class PageCache:
    """Pages keyed by name, each valid for the publication version it was built for."""

    def __init__(self, store: Store) -> None:
        self._fast = store.publication.sqlite_reader()
        self._version = _Coalesced(store.publication.current)
        self._pages: dict[str, tuple[int, CachedPage]] = {}
        self._building: dict[tuple[str, int], asyncio.Future[CachedPage | None]] = {}

    async def version(self) -> PublicationVersion:
        """The current version: on SQLite read right here (microseconds), elsewhere (or if
        SQLite is busy) in the thread pool, one read shared by the requests waiting for it."""
        if self._fast is not None:
            try:
                return self._fast()
            except sqlite3.Error:
                pass  # busy for more than 50 ms, or worse: the read below waits or says why
        return await self._version.get()

    async def get(
        self, key: str, build: Callable[[PublicationVersion], CachedPage | None]
    ) -> CachedPage | None:
        """The page `key` for the current version; `build` (run in the thread pool, once per
        key and version however many requests ask at once) returns None for no such page,
        which is not kept (keys come from URLs)."""
        current = await self.version()
        kept = self._pages.get(key)
        if kept is not None and kept[0] == current.version:
            return kept[1]
        slot = (key, current.version)
        pending = self._building.get(slot)
        if pending is None:
            pending = asyncio.ensure_future(self._build(key, current, build))
            self._building[slot] = pending

            def finished(done: asyncio.Future[CachedPage | None]) -> None:
                self._building.pop(slot, None)
                if not done.cancelled():
                    done.exception()  # retrieved, even if every waiter went away

            pending.add_done_callback(finished)
        return await asyncio.shield(pending)

    async def _build(
        self,
        key: str,
        current: PublicationVersion,
        build: Callable[[PublicationVersion], CachedPage | None],
    ) -> CachedPage | None:
        page = await run_in_threadpool(build, current)
        if page is not None:
            if len(self._pages) >= MAX_PAGES:
                self._pages = {k: v for k, v in self._pages.items() if v[0] == current.version}
                if len(self._pages) >= MAX_PAGES:
                    self._pages.clear()
            kept = self._pages.get(key)
            if kept is None or kept[0] <= current.version:
                self._pages[key] = (current.version, page)
        return page


def public_pages(request: Request) -> PageCache:
    """The app's cache of public pages (made by `newsletter.web.app.create_app`)."""
    return request.app.state.public_pages
