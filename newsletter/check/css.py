"""Just enough CSS reading for the client-support check: rules (with their @media) and
declarations, with offsets kept for line numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator


def strip_comments(css: str) -> str:
    """Blank out /* comments */, keeping offsets (and so line numbers) as they were."""
    return re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), css, flags=re.S)


def _matching_brace(css: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(css)):
        if css[i] == "{":
            depth += 1
        elif css[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(css)


def css_rules(
    css: str, start: int = 0, end: int | None = None, media: str | None = None
) -> Iterator[tuple[str | None, str, str, int]]:
    """(media query or None, selector or at-rule prelude, declarations, offset) per rule."""
    css = strip_comments(css) if start == 0 and end is None else css
    end = len(css) if end is None else end
    i = start
    while i < end:
        brace = css.find("{", i, end)
        semi = css.find(";", i, end)
        if brace == -1 and semi == -1:
            return
        if semi != -1 and (brace == -1 or semi < brace):
            prelude = css[i:semi].strip()
            if prelude.startswith("@"):  # @import, @charset
                yield media, prelude, "", _first_char(css, i)
            i = semi + 1
            continue
        close = _matching_brace(css, brace)
        prelude = css[i:brace].strip()
        offset = _first_char(css, i)
        if prelude.lower().startswith("@media"):
            yield from css_rules(css, brace + 1, close, prelude[6:].strip())
        elif prelude:
            yield (
                media,
                prelude,
                css[brace + 1 : close] if not prelude.startswith("@") else "",
                offset,
            )
        i = close + 1


def _first_char(css: str, i: int) -> int:
    while i < len(css) and css[i].isspace():
        i += 1
    return i


def declarations(body: str) -> Iterator[tuple[str, str]]:
    """(property, value) pairs, splitting on semicolons outside quotes and brackets."""
    depth, quote, start = 0, "", 0
    parts = []
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == ";" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    for part in parts:
        prop, sep, value = part.partition(":")
        if sep and prop.strip():
            yield prop.strip().lower(), value.strip()
