"""What the checks read from the HTML (elements, links, styles, visible text), with line
numbers, and small text helpers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    line: int


@dataclass
class Link:
    href: str
    line: int
    text: str = ""


@dataclass
class Document:
    """What the checks need from the HTML, with line numbers."""

    elements: list[Element] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    styles: list[tuple[str, int]] = field(default_factory=list)
    # Visible text and attribute values, each with its line.
    texts: list[tuple[str, int]] = field(default_factory=list)
    doctype: int | None = None
    comments: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, html: str) -> Document:
        parser = _Parser()
        parser.feed(html)
        parser.close()
        return parser.doc

    def all_text(self) -> str:
        return " ".join(chunk for chunk, _ in self.texts)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.doc = Document()
        self._open_links: list[Link] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line = self.getpos()[0]
        values = {k.lower(): v for k, v in attrs}
        self.doc.elements.append(Element(tag, values, line))
        for key, value in values.items():
            if value and key not in ("style",):
                self.doc.texts.append((value, line))
        if tag == "a" and values.get("href") is not None:
            link = Link(values["href"] or "", line)
            self.doc.links.append(link)
            self._open_links.append(link)
        elif tag == "style":
            self._in_style = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "style":
            self._in_style = False

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open_links:
            self._open_links.pop()
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        line = self.getpos()[0]
        if self._in_style:
            self.doc.styles.append((data, line))
            return
        if data.strip():
            self.doc.texts.append((data, line))
        for link in self._open_links:
            link.text += data

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            self.doc.doctype = self.getpos()[0]

    def handle_comment(self, data: str) -> None:
        self.doc.comments.append(self.getpos()[0])


def squash(value: str) -> str:
    return " ".join(value.split())


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
