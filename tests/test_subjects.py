"""Subject lines of multi-article issues: the editor's template, shortened to fit."""

from __future__ import annotations

from dataclasses import replace

import pytest

from newsletter.articles import read_article
from newsletter.resources import sample_articles
from newsletter.subjects import check_template, cut_at_word, issue_subject


@pytest.fixture
def samples():
    return [read_article(p) for p in sample_articles()]


def test_one_article_is_its_title(samples):
    assert issue_subject(samples[:1]) == "The Lighthouse Keeper's Daughter (2019): Ending Explained"


def test_titles_are_shortened_to_fit_a_phone(samples):
    assert issue_subject(samples[:2]) == "The Lighthouse Keeper's Daughter, Static Over Galveston"
    assert issue_subject(samples) == "The Lighthouse Keeper's Daughter (2019) and 2 more"


def test_the_shortening_steps(samples):
    titles = [
        "A (2001): Ending Explained",
        "B (2002): Ending Explained",
        "C (2003): Ending Explained",
    ]
    short = [replace(a, title=t) for a, t in zip(samples, titles, strict=True)]
    assert issue_subject(short, "{titles}", limit=200) == ", ".join(titles)
    # Tails go first, then years, and only then titles give way to "and N more".
    assert issue_subject(short, "{titles}", limit=60) == "A (2001), B (2002), C (2003)"
    assert issue_subject(short, "{titles}", limit=20) == "A, B, C"
    assert issue_subject(short, "{titles}", limit=6) == "A, B\u2026"


def test_placeholders(samples):
    subject = issue_subject(samples, "{lead} + {more} more ({count} in all)", limit=200)
    assert subject == (
        "The Lighthouse Keeper's Daughter (2019): Ending Explained + 2 more (3 in all)"
    )
    assert issue_subject(samples, "{count} endings explained: {titles}") == (
        "3 endings explained: The Lighthouse Keeper's Daughter\u2026"
    )


def test_the_editors_subject_wins(samples):
    lead = replace(samples[0], subject_override="Three islands, three endings")
    assert issue_subject([lead, *samples[1:]]) == "Three islands, three endings"


def test_templates_are_checked():
    check_template("{lead}: {count} endings, {titles}")
    with pytest.raises(ValueError, match=r"unknown placeholder \{ending\}"):
        check_template("{lead} {ending}")
    with pytest.raises(ValueError, match="not a valid template"):
        check_template("{lead")


def test_never_spoiler_text(samples):
    # Built from titles only: no sentence of any section can appear in a subject.
    subject = issue_subject(samples, "{titles}", limit=500)
    for article in samples:
        for section in article.sections:
            assert section.text[:30] not in subject


def test_cut_at_word():
    assert cut_at_word("one two three four", 12) == "one two\u2026"
    assert cut_at_word("Daughter and Static", 15) == "Daughter\u2026"
    assert cut_at_word("short", 12) == "short"
    assert len(cut_at_word("x" * 100, 60)) == 60
