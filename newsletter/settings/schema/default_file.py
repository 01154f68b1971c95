"""The commented newsletter.toml that `init` writes, generated from the schema: every setting
at its default, its description as the comment above it."""

from __future__ import annotations

import textwrap
from typing import Any

from newsletter.settings.schema.base import toml_literal
from newsletter.settings.schema.file import SettingsFile
from newsletter.settings.schema.workflow import FEEDS_EXAMPLE, FeedSection

HEADER = """\
newsletter settings. Secrets never go here: set SENDGRID_API_KEY, SMTP_PASSWORD,
BOUNCES_PASSWORD, DKIM_PRIVATE_KEY and NEWSLETTER_SECRET_KEY in the environment.
NEWSLETTER_DATABASE_URL, NEWSLETTER_PROVIDER, NEWSLETTER_BASE_URL and SENDGRID_API_HOST
override the values below."""

WIDTH = 94  # the generated file's comments are wrapped at this width, and long arrays


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width=WIDTH, break_on_hyphens=False)]


def _setting(key: str, value: Any) -> list[str]:
    """`key = value`; an array too long for one line is written one entry a line, so an
    editor can reorder, add or drop an entry (e.g. a section of the article contract)."""
    line = f"{key} = {toml_literal(value)}"
    if not isinstance(value, list | tuple) or len(line) <= WIDTH:
        return [line]
    return [f"{key} = [", *(f"    {toml_literal(v)}," for v in value), "]"]


def _feeds_example() -> list[str]:
    """Every [[feeds]] key with its description, commented out: there is no default feed."""
    lines = _comment("[[feeds]]: " + (FeedSection.__doc__ or "").split(":", 1)[1].strip())
    lines += ["# [[feeds]]"]
    example = FeedSection.model_validate(FEEDS_EXAMPLE)
    for key, spec in FeedSection.model_fields.items():
        lines += ["# " + line for line in _comment(spec.description or "")]
        lines += [f"# {line}" for line in _setting(key, getattr(example, key))]
    return lines


def default_toml() -> str:
    """The commented newsletter.toml that `init` writes: every setting at its default."""
    lines = [f"# {line}" if line else "#" for line in HEADER.splitlines()]
    for table, field in SettingsFile.model_fields.items():
        if table == "feeds":
            lines += ["", *_feeds_example()]
            continue
        section = field.annotation
        defaults = section()  # type: ignore[misc]
        lines += ["", f"[{table}]"]
        for key, spec in section.model_fields.items():  # type: ignore[union-attr]
            lines += _comment(spec.description or "")
            lines += _setting(key, getattr(defaults, key))
    return "\n".join(lines) + "\n"
