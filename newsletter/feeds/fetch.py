"""Fetching a feed: one kept httpx client, a conditional GET (the ETag and Last-Modified of
the previous answer), a timeout, connection errors retried by the transport; every failure
a `FeedError` naming the feed."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from newsletter.exceptions import FeedError

# A feed larger than this is refused rather than read into memory (10,000 entries of a
# typical WordPress feed are about 30 MB).
MAX_BYTES = 64 * 1024 * 1024
RETRIES = 2  # connection attempts retried by the transport before a fetch fails
USER_AGENT = "newsletter-feeds (+https://github.com/)"


@dataclass(frozen=True, kw_only=True)
class Fetched:
    """A feed's answer: `body` is None when it did not change (304)."""

    body: bytes | None
    content_type: str
    etag: str | None
    last_modified: str | None


def client() -> httpx.Client:
    """The client one polling round keeps for all its feeds (connections reused)."""
    return httpx.Client(
        transport=httpx.HTTPTransport(retries=RETRIES),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
        max_redirects=5,
    )


def fetch(
    http: httpx.Client,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    timeout: float,
) -> Fetched:
    """GET the feed, conditional on what the previous answer said."""
    headers = {"Accept": "application/feed+json, application/atom+xml, application/rss+xml, "
               "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"}  # fmt: skip
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        with http.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code == 304:
                return Fetched(body=None, content_type="", etag=etag, last_modified=last_modified)
            if response.status_code >= 400:
                raise FeedError(f"feed {url}: the server answered {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BYTES:
                    raise FeedError(f"feed {url}: larger than {MAX_BYTES // (1024 * 1024)} MB")
                chunks.append(chunk)
            return Fetched(
                body=b"".join(chunks),
                content_type=response.headers.get("content-type", ""),
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
    except httpx.TimeoutException:
        raise FeedError(f"feed {url}: no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise FeedError(f"feed {url}: cannot fetch it: {exc or type(exc).__name__}") from None
