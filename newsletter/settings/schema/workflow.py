"""The tables of what runs beside an issue: the welcome email a new reader gets ([welcome])
and the feeds whose entries are queued as articles ([[feeds]])."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from newsletter.settings.schema.base import Section


class WelcomeSection(Section):
    """[welcome]: the email a new reader gets once."""

    enabled: bool = Field(
        False,
        description="Send a welcome email (templates/welcome.html and welcome.txt) once to "
        "each reader who confirms their sign-up, or is imported with `subscribers import "
        "--welcome`; it shows the latest sent issue as cards, never its ending.",
    )


class FeedSection(Section):
    """[[feeds]]: a site's feed (RSS 2.0, Atom or JSON Feed) whose new entries are queued as
    articles, each once (by its id), fitted to the article contract or held with its errors."""

    url: str = Field(description="The feed's address (http:// or https://).")
    every_minutes: int = Field(
        60, ge=1, le=7 * 24 * 60, description="How often the scheduler fetches it."
    )
    layout: Literal["", "full", "digest"] = Field(
        "",
        description='The layout of an issue made of this feed\'s entries ("": automatic).',
    )
    backlog: int = Field(
        5,
        ge=0,
        le=1000,
        description="Entries taken from the feed's first fetch, newest first; the older "
        "ones are remembered as already published.",
    )
    timeout_seconds: float = Field(
        20, gt=0, le=300, description="How long one fetch may take.", strict=False
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) > 2000:
            raise ValueError("must be an http:// or https:// address")
        return value


# `init` writes the list of feeds as a commented-out example (it has no default entry).
FEEDS_EXAMPLE = {"url": "https://example.com/feed/"}
