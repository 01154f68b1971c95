"""What a tag may be: the one rule the CSV import, `subscribers tag`, the workspace and the
segment parser share. Lower case letters, digits, `-` and `_`, starting with a letter or a
digit, at most 64 characters: a tag is a word of a segment (`tag:films`), so it can hold no
space, no comma and no operator."""

from __future__ import annotations

import re

from newsletter.exceptions import BadTag

MAX_TAG_LENGTH = 64  # store.schema's tags.name
_TAG = re.compile(r"[a-z0-9][a-z0-9_-]*")


def normalize_tag(raw: str) -> str:
    """The tag as stored (lower case, trimmed), or BadTag naming what is wrong with it."""
    tag = raw.strip().lower()
    if not tag:
        raise BadTag("a tag is empty")
    if "," in tag:
        raise BadTag(
            f'{raw.strip()!r} holds a comma: tags are separated by spaces (e.g. "films horror")'
        )
    if len(tag) > MAX_TAG_LENGTH:
        raise BadTag(f"{raw.strip()[:20]!r}... is longer than {MAX_TAG_LENGTH} characters")
    if not _TAG.fullmatch(tag):
        raise BadTag(
            f"{raw.strip()!r} is not a tag: use letters, digits, '-' and '_', starting with a "
            "letter or a digit"
        )
    return tag


def parse_tags(cell: str) -> tuple[str, ...]:
    """A CSV `tags` cell: tags separated by spaces, each normalised, duplicates dropped."""
    if "," in cell:
        raise BadTag(
            f'{cell.strip()!r} holds a comma: separate tags with spaces (e.g. "films horror")'
        )
    seen: dict[str, None] = {}
    for word in cell.split():
        seen[normalize_tag(word)] = None
    return tuple(seen)
