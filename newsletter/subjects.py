"""Subject lines for issues, built from titles only so they can never carry spoiler text.

A one-article issue is the article's title (or the editor's `subject:`). An issue of several
articles fills the editor's template (`{lead}`, `{count}`, `{more}`, `{titles}`) and, when the
result is longer than a phone shows, tries shorter forms in turn: titles without their
"Ending Explained" tail, then without the year, and only then fewer titles with "and N more";
when nothing fits, the shortest form is cut at a word, with an ellipsis.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from typing import Protocol

# Phones show about this many characters of a subject line in the inbox list.
SUBJECT_MAX_CHARS = 60
DEFAULT_SUBJECT_TEMPLATE = "{titles}"
PLACEHOLDERS = ("lead", "count", "more", "titles")
ELLIPSIS = "\u2026"

_TAIL = re.compile(r"\s*[:\u2013\u2014-]\s*(?:the\s+)?ending(?:s)?\s+explained\s*$", re.IGNORECASE)
_YEAR = re.compile(r"\s*\(\s*\d{4}\s*\)\s*$")


class Titled(Protocol):
    """What a subject is made of: an article's title and the editor's own subject line."""

    @property
    def title(self) -> str: ...

    @property
    def subject_override(self) -> str | None: ...


def check_template(template: str) -> None:
    """Raise ValueError naming the first placeholder the template may not use."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{template!r} is not a valid template: {exc}") from None
    for name in fields:
        if name not in PLACEHOLDERS:
            allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{name}}} in {template!r}; use {allowed}")


def _without_tail(title: str) -> str:
    return _TAIL.sub("", title).strip() or title


def _without_year(title: str) -> str:
    return _YEAR.sub("", _without_tail(title)).strip() or title


FORMS: tuple[Callable[[str], str], ...] = (lambda t: t, _without_tail, _without_year)


def issue_subject(
    articles: Sequence[Titled],
    template: str = DEFAULT_SUBJECT_TEMPLATE,
    limit: int = SUBJECT_MAX_CHARS,
) -> str:
    """The subject of an issue of `articles` (the lead first)."""
    if not articles:
        raise ValueError("an issue needs at least one article")
    lead = articles[0]
    if len(articles) == 1 or lead.subject_override:
        return _one_line(lead.subject_override or lead.title)
    check_template(template)
    titles = [_one_line(a.title) for a in articles]
    shortest = ""
    # Every title in its shortest form before any title gives way to "and N more".
    for keep in range(len(titles), 0, -1):
        for form in FORMS:
            shown = [form(t) for t in titles]
            listed = ", ".join(shown[:keep])
            if keep < len(shown):
                listed += f" and {len(shown) - keep} more"
            candidate = _one_line(
                template.format(
                    lead=shown[0], count=len(articles), more=len(articles) - 1, titles=listed
                )
            )
            if len(candidate) <= limit:
                return candidate
            if not shortest or len(candidate) < len(shortest):
                shortest = candidate
    return cut_at_word(shortest, limit)


def cut_at_word(text: str, limit: int = SUBJECT_MAX_CHARS) -> str:
    """At most `limit` characters, cut after a whole word, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if text[limit - 1] != " " and " " in head:
        head = head.rsplit(" ", 1)[0]
    head = head.rstrip(" ,;:\u2014-")
    # Not "Title and…" or "Title and 2…": a joining word or a bare count says nothing.
    words = head.split(" ")
    while len(words) > 1 and (
        words[-1].lower() in ("and", "or", "&", "+", "with") or words[-1].isdigit()
    ):
        words.pop()
    return " ".join(words).rstrip(" ,;:\u2014-") + ELLIPSIS


def _one_line(text: str) -> str:
    return " ".join(text.split())
