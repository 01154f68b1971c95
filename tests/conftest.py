"""Shared fixtures: a real newsletter folder with its own SQLite file in tmp_path."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from newsletter.records import RenderedIssue
from newsletter.settings import load_settings, settings_from_dict, write_default_config
from newsletter.store import Store
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401

if TYPE_CHECKING:
    from newsletter.delivery import DeliveryPolicy

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed" / "000_aa5f1ebe7ebc93f7.txt"


@dataclass(frozen=True, kw_only=True)
class PlainArticle:
    """A plain-text article of the seed's format and what the tests know of its content."""

    path: Path
    title: str
    summary: str
    year: int
    rating: float
    author: str
    headings: tuple[str, ...]
    recap_start: str
    second_heading_line: int
    # A few words of the title, safe to look for in HTML (no apostrophe to escape).
    words: str
    # A few words from a spoiler section (after the divider).
    spoiler_words: str
    # Golden files: tests/golden/{golden}_email.html and .txt.
    golden: str


SEED_ARTICLE = PlainArticle(
    path=SEED,
    title="Red Rocket (2021): Ending Explained",
    summary="Comprehensive ending explained for red rocket (2021).",
    year=2021,
    rating=6.785,
    author="Ellis Carver",
    headings=(
        "Quick Recap",
        "What Happens in the Ending",
        "The Meaning Behind the Ending",
        "Character Arcs and Resolution",
        "Alternate Interpretations",
        "Themes and Symbolism",
        "Final Thoughts",
    ),
    recap_start="In Red Rocket, directed by Sean Baker",
    second_heading_line=11,
    words="Red Rocket",
    spoiler_words="Bereft and broke",
    golden="seed",
)
SAMPLE_ARTICLE = PlainArticle(
    path=REPO / "issues" / "001_the-lighthouse-keepers-daughter.txt",
    title="The Lighthouse Keeper's Daughter (2019): Ending Explained",
    summary="Why the last light on Skerry Point goes out, and what it leaves behind.",
    year=2019,
    rating=7.4,
    author="Mara Lindqvist",
    headings=(
        "Quick Recap",
        "What Happens in the Ending",
        "The Meaning Behind the Ending",
        "Final Thoughts",
    ),
    recap_start="Ingrid Holm (Saga Brandt) returns to the island",
    second_heading_line=10,
    words="Lighthouse Keeper",
    spoiler_words="On the night of the worst storm",
    golden="sample",
)
# Every plain-text article at hand: the bundled sample always, the seed when ../shared is there.
PLAIN_ARTICLES = [SAMPLE_ARTICLE, *([SEED_ARTICLE] if SEED.exists() else [])]


@pytest.fixture
def seed() -> PlainArticle:
    """The seed article when ../shared is beside the repo, else the bundled sample of the same
    format, so a clean clone runs every test."""
    return SEED_ARTICLE if SEED.exists() else SAMPLE_ARTICLE


@pytest.fixture
def seed_path(seed: PlainArticle) -> Path:
    return seed.path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder made by `newsletter init`: newsletter.toml, issues/, outbox/."""
    write_default_config(tmp_path)
    return tmp_path


@pytest.fixture
def settings(folder: Path):
    return load_settings(folder / "newsletter.toml", env={})


@pytest.fixture
def store(settings):
    store = Store(settings.database_url)
    yield store
    store.close()


def run_cli(
    args: list[str], cwd: Path, env: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run the real `newsletter` command in a subprocess, as a user would."""
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "newsletter.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def delivery_policy(**changes: Any) -> DeliveryPolicy:
    """The sender's policy at the schema's [delivery] defaults, with CHANGES: a test names
    only what it is about (DeliveryPolicy itself has no defaults)."""
    from newsletter.delivery import DeliveryPolicy

    defaults = DeliveryPolicy.from_settings(settings_from_dict({}, REPO))
    return dataclasses.replace(defaults, **changes)


def stub_issue(slug: str, subject: str) -> RenderedIssue:
    """A rendered issue of one paragraph: for tests of the delivery log and the pages around
    an issue, where what the email says does not matter."""
    return RenderedIssue(
        slug=slug,
        subject=subject,
        preheader="",
        html="<p>x</p>",
        text="x",
        archive_html="<p>x</p>",
        placeholder_nonce="0" * 16,
        view_url="",
    )
