"""Read an editor's article file into an `Article`.

Two formats: the plain-text "ending explained" layout (title line, summary line, `Key: value`
lines, then sections whose heading stands alone on its line) and Markdown with YAML front
matter. Anything unreadable raises `ArticleError` naming the file and line, so one bad file
never stops the rest of the queue.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import frontmatter
import yaml
from markdown_it import MarkdownIt
from markupsafe import Markup

from newsletter.exceptions import ArticleError

RECAP_HEADING = "quick recap"
ARTICLE_SUFFIXES = (".txt", ".md", ".markdown")

# Headings the sample format uses; other short, unpunctuated lines count as headings too.
KNOWN_HEADINGS = {
    "quick recap",
    "what happens in the ending",
    "the meaning behind the ending",
    "character arcs and resolution",
    "alternate interpretations",
    "themes and symbolism",
    "final thoughts",
}
_RATING = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*$")
_META = re.compile(r"^(Release Year|Year|Rating|Author)\s*:\s*(.*)$", re.IGNORECASE)
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


@dataclass(frozen=True)
class Section:
    """One headed part of an article; `html` is built from escaped text, never raw input."""

    heading: str
    text: str
    html: Markup
    line: int
    # The file line of each paragraph of `text` (paragraphs are separated by a blank line),
    # so checks can point an editor at the exact paragraph.
    lines: tuple[int, ...] = ()

    @property
    def is_recap(self) -> bool:
        return self.heading.strip().lower() == RECAP_HEADING


@dataclass(frozen=True)
class Article:
    path: Path
    title: str
    summary: str | None
    year: int | None
    rating: float | None
    author: str | None
    sections: tuple[Section, ...]
    teaser_override: str | None = None
    subject_override: str | None = None
    not_before: datetime | date | None = None
    # Every (line, text) that states the title: the first line and the repeated title of the
    # plain format, or the front matter's `title:`. The article contract compares them.
    title_lines: tuple[tuple[int, str], ...] = ()

    @property
    def recap(self) -> Section | None:
        """The spoiler-safe part: the Quick Recap section, if the article has one."""
        return next((s for s in self.sections if s.is_recap), None)

    @property
    def spoiler_sections(self) -> tuple[Section, ...]:
        """Everything after the Quick Recap (or every section when there is none)."""
        for i, section in enumerate(self.sections):
            if section.is_recap:
                return self.sections[i + 1 :]
        return self.sections


def read_article(
    path: Path | str, *, headings: Iterable[str] | None = None, strict: bool = True
) -> Article:
    """Read one article file, choosing the format from its suffix.

    `headings` are the section headings the article contract knows (default: the sample
    format's); a known heading always starts a section. With `strict=False` an empty section
    is kept (with empty text) instead of refused, so the contract check can report it along
    with everything else in the file."""
    path = Path(path)
    known = KNOWN_HEADINGS if headings is None else {_norm(h) for h in headings}
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArticleError(path, None, f"cannot read file: {exc.strerror or exc}") from exc
    _refuse_other_formats(path, raw)
    text = _decode(path, raw)
    if path.suffix.lower() in (".md", ".markdown"):
        return _read_markdown(path, text, strict)
    return _read_plain(path, text, known, strict)


# Formats editors save from word processors and browsers, by suffix and by their first bytes
# (a .docx, .odt or .pages is a zip; a PDF starts with %PDF; an RTF with {\rtf).
_OTHER_FORMATS = {
    ".docx": "Word", ".doc": "Word", ".odt": "OpenDocument", ".rtf": "RTF", ".pdf": "PDF",
    ".html": "HTML", ".htm": "HTML", ".pages": "Pages",
}  # fmt: skip
_MAGIC = ((b"PK\x03\x04", "a zip archive (Word, OpenDocument or Pages)"), (b"%PDF", "PDF"),
          (b"{\\rtf", "RTF"), (b"\xd0\xcf\x11\xe0", "an old Word document"))  # fmt: skip
SUPPORTED = "use plain text (.txt, like the sample) or Markdown (.md)"


def _refuse_other_formats(path: Path, raw: bytes) -> None:
    """Say which format a file is and which we read, rather than failing on its bytes."""
    suffix = path.suffix.lower()
    if suffix in _OTHER_FORMATS:
        raise ArticleError(path, None, f"{suffix} articles are not supported; {SUPPORTED}")
    head = raw[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    for magic, name in _MAGIC:
        if head.startswith(magic):
            raise ArticleError(path, None, f"this file is {name}, not text; {SUPPORTED}")
    if head[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise ArticleError(path, None, f"this file is an HTML page; {SUPPORTED}")


def _norm(heading: str) -> str:
    return " ".join(heading.split()).lower()


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ArticleError(
            path, line, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


# What editors write for "no rating yet": the piece is shown without one.
NO_RATING = frozenset({"", "n/a", "na", "-", "--", "none", "unrated", "not rated", "tbd", "tba"})


def parse_rating(value: object, path: Path, line: int | None) -> float | None:
    """A rating is a number out of 10 ("6.785/10", "7", 7.5), or None for "N/A" and the like."""
    if value is None or (isinstance(value, str) and value.strip().lower() in NO_RATING):
        return None
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _RATING.match(str(value))
        if not match:
            raise ArticleError(path, line, f"rating {str(value)!r} is not a number out of 10")
        number = float(match.group(1))
    if not 0 <= number <= 10:
        raise ArticleError(path, line, f"rating {number:g} is not between 0 and 10")
    return number


def _parse_year(value: object, path: Path, line: int | None) -> int:
    try:
        year = int(str(value).strip())
    except ValueError:
        raise ArticleError(path, line, f"year {str(value)!r} is not a number") from None
    if not 1870 <= year <= 2200:
        raise ArticleError(path, line, f"year {year} is out of range")
    return year


def _is_heading(line: str, next_line: str | None, known: set[str] = KNOWN_HEADINGS) -> bool:
    stripped = line.strip()
    if not stripped or next_line is None or not next_line.strip():
        return False
    if _norm(stripped) in known:
        return True
    return (
        len(stripped) <= 70
        and stripped[-1] not in '.!?,;:"\u201d\u2019)'
        and len(stripped.split()) <= 10
        and stripped[0].isupper()
    )


def _paragraphs_html(paragraphs: list[str]) -> Markup:
    return Markup("\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs))


def _similar_title(line: str, title: str) -> bool:
    """A repeated title with a typo is still the repeated title (the contract reports it)."""
    return difflib.SequenceMatcher(None, line.lower(), title.lower()).ratio() >= 0.75


def _read_plain(path: Path, text: str, known: set[str] = KNOWN_HEADINGS, strict=True) -> Article:
    lines = text.split("\n")
    numbered = [(i + 1, line.strip()) for i, line in enumerate(lines)]
    content = [(n, line) for n, line in numbered if line]
    if not content:
        raise ArticleError(path, 1, "the file is empty: expected a title on the first line")
    title_line, title = content[0]
    if _META.match(title):
        raise ArticleError(path, title_line, "no title: the first line is a metadata line")
    meta: dict[str, tuple[int, str]] = {}
    summary: str | None = None
    title_lines = [(title_line, title)]
    index = 1
    while index < len(content):
        n, line = content[index]
        after = content[index + 1][1] if index + 1 < len(content) else ""
        match = _META.match(line)
        # The repeated title, even with a typo, when a known heading follows it.
        repeated = line == title or (
            _norm(line) not in known and _norm(after) in known and _similar_title(line, title)
        )
        if match:
            meta[match.group(1).lower()] = (n, match.group(2).strip())
        elif summary is None and not meta and _norm(line) not in known and not repeated:
            summary = line
        elif repeated:
            title_lines.append((n, line))
            index += 1
            break
        else:
            break
        index += 1

    year = rating = author = None
    if "release year" in meta or "year" in meta:
        n, value = meta.get("release year") or meta["year"]
        year = _parse_year(value, path, n)
    if "rating" in meta:
        n, value = meta["rating"]
        rating = parse_rating(value, path, n)
    if "author" in meta:
        author = meta["author"][1] or None

    body = content[index:]
    sections: list[Section] = []
    heading: tuple[int, str] | None = None
    paragraphs: list[str] = []
    paragraph_lines: list[int] = []

    def close() -> None:
        if heading is not None:
            if not paragraphs and strict:
                raise ArticleError(path, heading[0], f"section {heading[1]!r} has no text")
            sections.append(
                Section(
                    heading[1],
                    "\n\n".join(paragraphs),
                    _paragraphs_html(paragraphs),
                    heading[0],
                    tuple(paragraph_lines),
                )
            )

    for pos, (n, line) in enumerate(body):
        following = body[pos + 1][1] if pos + 1 < len(body) else None
        # A known heading straight after another heading starts a section (the first one is
        # empty) rather than becoming its text: otherwise "Quick Recap" followed at once by
        # "What Happens in the Ending" would put the ending into the recap.
        if (_is_heading(line, following, known) and (heading is None or paragraphs)) or (
            heading is not None and not paragraphs and _norm(line) in known
        ):
            close()
            heading, paragraphs, paragraph_lines = (n, line), [], []
        elif heading is None:
            raise ArticleError(
                path,
                n,
                "text before the first section heading (e.g. 'Quick Recap' alone on a line)",
            )
        else:
            paragraphs.append(line)
            paragraph_lines.append(n)
    close()
    if not sections:
        raise ArticleError(
            path,
            content[-1][0],
            "no sections: expected headings such as 'Quick Recap' on their own line",
        )
    return Article(
        path, title, summary, year, rating, author, tuple(sections), title_lines=tuple(title_lines)
    )


def _read_markdown(path: Path, text: str, strict: bool = True) -> Article:
    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1  # +1 for 0-based, +1 for the '---' line
        raise ArticleError(path, line, f"front matter is not valid YAML: {exc}") from None
    meta = post.metadata
    body_offset = text[: len(text) - len(post.content)].count("\n") if post.content else 0

    def meta_line(key: str) -> int | None:
        for i, line in enumerate(text.split("\n")[:body_offset], start=1):
            if line.startswith(f"{key}:"):
                return i
        return None

    title = str(meta.get("title") or "").strip()
    if not title:
        raise ArticleError(path, 1, "no title: add 'title:' to the front matter")
    year = _parse_year(meta["year"], path, meta_line("year")) if meta.get("year") else None
    rating = (
        parse_rating(meta["rating"], path, meta_line("rating"))
        if meta.get("rating") not in (None, "")
        else None
    )
    not_before = meta.get("not_before")
    if not_before is not None and not isinstance(not_before, (datetime, date)):
        try:
            not_before = datetime.fromisoformat(str(not_before))
        except ValueError:
            raise ArticleError(
                path, meta_line("not_before"), f"not_before {not_before!r} is not a date and time"
            ) from None
    sections = _markdown_sections(path, post.content, body_offset, strict)
    if not sections:
        raise ArticleError(
            path, body_offset + 1, "no sections: expected '## Quick Recap' and others"
        )
    return Article(
        path=path,
        title=title,
        summary=str(meta["summary"]).strip() if meta.get("summary") else None,
        year=year,
        rating=rating,
        author=str(meta["author"]).strip() if meta.get("author") else None,
        sections=tuple(sections),
        teaser_override=str(meta["teaser"]).strip() if meta.get("teaser") else None,
        subject_override=str(meta["subject"]).strip() if meta.get("subject") else None,
        not_before=not_before,
        title_lines=((meta_line("title") or 1, title),),
    )


def _markdown_sections(path: Path, body: str, offset: int, strict: bool = True) -> list[Section]:
    tokens = _MD.parse(body)
    heading_starts = [
        i for i, tok in enumerate(tokens) if tok.type == "heading_open" and tok.tag in ("h1", "h2")
    ]
    if tokens and heading_starts and heading_starts[0] != 0:
        first = tokens[0].map[0] + offset + 1 if tokens[0].map else offset + 1
        raise ArticleError(path, first, "text before the first '## ' section heading")
    sections = []
    lines = body.split("\n")
    for k, start in enumerate(heading_starts):
        end = heading_starts[k + 1] if k + 1 < len(heading_starts) else len(tokens)
        heading = tokens[start + 1].content.strip()
        heading_map = tokens[start].map
        assert heading_map is not None  # block tokens always carry their source lines
        line_no = heading_map[0] + offset + 1
        inner = tokens[start + 3 : end]
        if not inner:
            if strict:
                raise ArticleError(path, line_no, f"section {heading!r} has no text")
            sections.append(Section(heading, "", Markup(""), line_no))
            continue
        first_line = inner[0].map[0] if inner[0].map else heading_map[1]
        last_line = max((t.map[1] for t in inner if t.map), default=first_line)
        source = "\n".join(lines[first_line:last_line]).strip()
        rendered = _MD.renderer.render(inner, _MD.options, {})
        inline = [t for t in inner if t.type == "inline"]
        plain = "\n\n".join("".join(_inline_text(c) for c in (t.children or [])) for t in inline)
        lines_of = tuple((t.map[0] if t.map else first_line) + offset + 1 for t in inline)
        sections.append(Section(heading, plain or source, Markup(rendered), line_no, lines_of))
    return sections


def _inline_text(token) -> str:
    if token.type in ("text", "code_inline"):
        return token.content
    if token.type in ("softbreak", "hardbreak"):
        return " "
    return ""
