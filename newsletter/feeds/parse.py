"""A fetched feed into entries: RSS 2.0 and Atom through feedparser (which also sanitises
their HTML), JSON Feed 1.0/1.1 through a small adapter (feedparser 6 does not read it) that
rewrites it as an Atom document for feedparser, so every format is read and sanitised once. A document that is no feed at all is a
`FeedError` naming the feed and, when the XML parser knows it, the line."""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime

import feedparser

from newsletter.exceptions import FeedError

BENIGN = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1")


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One entry of a feed, whatever its format."""

    guid: str  # the entry's id: guid, Atom id, JSON Feed id; else its link; else a hash
    title: str
    link: str
    html: str  # sanitised HTML of the whole post (its content, else its summary)
    author: str
    published: datetime | None

    @property
    def key(self) -> str:
        """The entry's key in the store: the SHA-256 of its id."""
        return hashlib.sha256(self.guid.encode("utf-8")).hexdigest()


def parse_feed(url: str, body: bytes, content_type: str = "") -> list[Entry]:
    """The entries of a feed document, in the document's order."""
    start = body.lstrip()[:1]
    if "json" in content_type.lower() or start in (b"{", b"["):
        body, content_type = _json_feed_as_atom(url, body), "application/atom+xml"
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-type": content_type or "application/xml",
                          "content-location": url},
    )  # fmt: skip
    version = parsed.get("version", "")
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    # A wrong declared encoding or content type is read anyway; XML that is not well formed
    # (a truncated export) would only give a guess of its entries: refused, with its line.
    if problem is not None and not isinstance(problem, BENIGN):
        raise FeedError(f"feed {url}: not a readable feed: {_located(problem)}")
    if not version and not parsed.entries:
        raise FeedError(f"feed {url}: not an RSS, Atom or JSON feed")
    return [_entry(url, e) for e in parsed.entries]


def _located(exc: object) -> str:
    line = getattr(exc, "getLineNumber", None)
    what = str(exc) or type(exc).__name__
    return f"line {line()}: {what}" if callable(line) else what


def _guid(raw_id: str, link: str, title: str, html: str) -> str:
    if raw_id.strip():
        return raw_id.strip()
    if link.strip():
        return link.strip()
    return "sha256:" + hashlib.sha256(f"{title}\n{html}".encode()).hexdigest()


def _entry(url: str, e: feedparser.FeedParserDict) -> Entry:
    content = e.get("content") or []
    html = content[0].get("value", "") if content else e.get("summary", "")
    title = " ".join(str(e.get("title", "")).split())
    link = str(e.get("link", ""))
    stamp = e.get("published_parsed") or e.get("updated_parsed")
    published = datetime.fromtimestamp(calendar.timegm(stamp), UTC) if stamp else None
    return Entry(
        guid=_guid(str(e.get("id", "")), link, title, html),
        title=title,
        link=link,
        html=html,
        author=str(e.get("author", "")),
        published=published,
    )


ATOM = "http://www.w3.org/2005/Atom"


def _json_feed_as_atom(url: str, body: bytes) -> bytes:
    """JSON Feed (https://jsonfeed.org/version/1.1) as the Atom document it stands for:
    each item's id, title, url, content_html (or content_text), date_published and first
    author, so feedparser reads and sanitises it like any other feed."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno}: " if isinstance(exc, json.JSONDecodeError) else ""
        raise FeedError(f"feed {url}: not a readable JSON feed: {where}{exc}") from None
    if not isinstance(document, dict) or document.get("version") not in JSON_FEED_VERSIONS:
        raise FeedError(f"feed {url}: JSON without a JSON Feed version ({JSON_FEED_VERSIONS[-1]})")
    items = document.get("items")
    if not isinstance(items, list):
        raise FeedError(f"feed {url}: a JSON Feed needs a list of items")
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = str(document.get("title") or "")
    for item in items:
        if not isinstance(item, dict):
            continue
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = str(item.get("id") or "")
        if item.get("title"):
            ET.SubElement(entry, f"{{{ATOM}}}title").text = str(item["title"])
        if item.get("url"):
            ET.SubElement(entry, f"{{{ATOM}}}link", href=str(item["url"]), rel="alternate")
        stamp = item.get("date_published") or item.get("date_modified")
        if isinstance(stamp, str):
            ET.SubElement(entry, f"{{{ATOM}}}published").text = stamp
        authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
        name = next((a.get("name") for a in authors if isinstance(a, dict) and a.get("name")), "")
        if name:
            ET.SubElement(ET.SubElement(entry, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = name
        html = item.get("content_html")
        if not isinstance(html, str):
            text = item.get("content_text")
            paragraphs = str(text).split("\n\n") if isinstance(text, str) else []
            html = "".join(f"<p>{_escape(p)}</p>" for p in paragraphs if p.strip())
        ET.SubElement(entry, f"{{{ATOM}}}content", type="html").text = html
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
