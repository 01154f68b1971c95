"""Cut the spoiler-safe recap teaser that introduces an article and fills the preheader.

Only the Quick Recap (or the editor's own `teaser:`, or the one-line summary) is ever read
here, so no text from the ending can leak into a teaser, a preheader or a subject.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from newsletter.articles import Article, Section
from newsletter.exceptions import ArticleError

MAX_TEASER_CHARS = 300
ELLIPSIS = "\u2026"

_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Jr.", "Sr.", "vs.", "Mt.", "No.", "U.S.")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+")


def recap_teaser(
    article: Article, limit: int = MAX_TEASER_CHARS, safe: Sequence[Section] | None = None
) -> str:
    """The teaser for `article`: the editor's, else the recap's opening, else the summary.
    `safe` are the spoiler-free sections by the article contract; the first is the recap
    (default: the section headed Quick Recap)."""
    if article.teaser_override:
        return _one_line(article.teaser_override)
    if safe is None:
        recap = article.recap
    else:
        recap = safe[0] if safe else None
    if recap is not None:
        return shorten(recap.text, limit)
    if article.summary:
        return shorten(article.summary, limit)
    raise ArticleError(
        article.path,
        None,
        "no spoiler-free section (such as 'Quick Recap'), no 'teaser:' and no summary line: "
        "refusing to build a teaser from spoiler text; add a Quick Recap or a teaser",
    )


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences, keeping common abbreviations ("Dr. Who") together."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.start()].rstrip()
        if any(candidate.endswith(abbr) for abbr in _ABBREVIATIONS):
            continue
        if match.end() < len(text) and not (
            text[match.end()].isupper() or text[match.end()] in "\"'\u201c(["
        ):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def shorten(text: str, limit: int = MAX_TEASER_CHARS) -> str:
    """Whole sentences up to `limit` characters; otherwise cut at a word, with an ellipsis."""
    text = _one_line(text)
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in split_sentences(text):
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) + 2 > limit:
            break
        kept = candidate
    if kept:
        return f"{kept} {ELLIPSIS}"
    words = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return words.rstrip(" ,;:\u2014-") + ELLIPSIS


def _one_line(text: str) -> str:
    return " ".join(text.split())
