"""The article contract: what a piece must contain, and the problems reported by line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.articles import read_article
from newsletter.conformance import validate_file
from newsletter.contract import DEFAULT_CONTRACT, Contract, SectionRule, contract_from_lists
from newsletter.exceptions import ArticleError
from newsletter.resources import sample_articles
from tests.conftest import run_cli, write

DATA = Path(__file__).resolve().parent / "data"

BROKEN_TXT = """\
Red Rocket (2021): Ending Explained
A summary.
Release Year: 2021
Rating: 6.8/10
Red Rocket (2012): Ending Explained
Quick Recap
What Happens in the Ending
Mikey is beaten and leaves town.
Themes and Symbolism
Bus, bicycle.
The Meaning Behind the Ending
Cycles.
Alternate Interpetations
Maybe he changes.
Final Thoughts:
It lingers.
Themes and Symbolism
Again.
"""

BROKEN_MD = """\
---
title: T
---
## Quick Recap

Some recap.

### What Happens in the Ending

He dies.

## Final Thoughts

## Themes

Bees.
"""


def found(problems):
    return [(p.line, p.severity, p.code) for p in problems]


def test_the_seed_samples_and_test_articles_keep_the_default_contract(seed_path):
    # tests/data/feeds/ holds feed samples (tests/test_feeds.py), not articles.
    articles = (p for p in DATA.iterdir() if p.is_file())
    for path in (seed_path, *sample_articles(), *articles):
        assert validate_file(path) == [], path


def test_every_problem_of_a_plain_text_file_by_line(tmp_path):
    path = write(tmp_path / "broken.txt", BROKEN_TXT)
    problems = validate_file(path)
    assert found(problems) == [
        (5, "warning", "title-mismatch"),
        (6, "error", "empty-section"),
        (11, "warning", "out-of-order"),
        (13, "warning", "unknown-heading"),
        (15, "warning", "unparsed-heading"),
        (17, "error", "duplicate-section"),
    ]
    by_code = {p.code: p for p in problems}
    assert "'Red Rocket (2012): Ending Explained'" in by_code["title-mismatch"].message
    assert "line 1" in by_code["title-mismatch"].message
    assert "should come before 'Themes and Symbolism' (line 9)" in by_code["out-of-order"].message
    assert "did you mean 'Alternate Interpretations'?" in by_code["unknown-heading"].message
    assert "first at line 9" in by_code["duplicate-section"].message
    assert str(by_code["empty-section"]).startswith(f"{path}:6: error: ")


def test_every_problem_of_a_markdown_file_by_line(tmp_path):
    path = write(tmp_path / "broken.md", BROKEN_MD)
    ending_required = Contract(
        tuple(
            replace(rule, required=True) if rule.heading == "What Happens in the Ending" else rule
            for rule in DEFAULT_CONTRACT.sections
        )
    )
    assert "missing-section" not in {p.code for p in validate_file(path)}
    problems = validate_file(path, ending_required)
    assert found(problems) == [
        # An h3 is not a section: the ending would be read as part of the recap.
        (8, "error", "unparsed-heading"),
        (12, "error", "empty-section"),
        (12, "error", "missing-section"),
        (14, "warning", "unknown-heading"),
    ]
    by_code = {p.code: p for p in problems}
    assert "'## What Happens in the Ending'" in by_code["unparsed-heading"].message
    assert "expected before 'Final Thoughts'" in by_code["missing-section"].message
    assert "did you mean 'Themes and Symbolism'?" in by_code["unknown-heading"].message


def test_a_missing_section_at_the_end_points_at_the_last_line(tmp_path):
    contract = Contract(
        (SectionRule("Quick Recap", required=True, spoiler=False), SectionRule("Verdict", True))
    )
    path = write(tmp_path / "a.txt", "T\nS.\nQuick Recap\nOne.\n\nTwo.\n")
    assert found(validate_file(path, contract)) == [(6, "error", "missing-section")]


def test_an_unreadable_file_is_one_problem_with_the_readers_line(tmp_path):
    path = write(tmp_path / "a.txt", "T\nS.\nRating: lots\nQuick Recap\nText.\n")
    (problem,) = validate_file(path)
    assert (problem.line, problem.code) == (3, "unreadable")


def test_a_known_heading_right_after_a_heading_starts_a_section(tmp_path):
    # Before the contract, the second heading and the ending became the recap's text.
    path = write(tmp_path / "a.txt", "T\nS.\nQuick Recap\nWhat Happens in the Ending\nHe dies.\n")
    with pytest.raises(ArticleError, match="'Quick Recap' has no text") as info:
        read_article(path)
    assert info.value.line == 3
    lenient = read_article(path, strict=False)
    assert [(s.heading, s.text) for s in lenient.sections] == [
        ("Quick Recap", ""),
        ("What Happens in the Ending", "He dies."),
    ]


def test_a_mistyped_repeated_title_is_still_the_title(seed, tmp_path):
    lines = seed.path.read_text(encoding="utf-8").split("\n")
    first, repeated = [n for n, line in enumerate(lines) if line.strip() == seed.title][:2]
    lines[repeated] = seed.title.replace("(", "[")
    article = read_article(write(tmp_path / "seed.txt", "\n".join(lines)))
    assert article.sections[0].heading == "Quick Recap"
    assert article.title_lines == (
        (first + 1, seed.title),
        (repeated + 1, seed.title.replace("(", "[")),
    )
    (problem,) = validate_file(tmp_path / "seed.txt")
    assert (problem.line, problem.code) == (repeated + 1, "title-mismatch")


def test_paragraph_lines_are_kept():
    assert read_article(DATA / "leaky_recap.txt").sections[0].lines == (8, 9)
    assert read_article(DATA / "leaky_recap.md").sections[1].lines == (17, 19)


def test_spoilers_come_from_the_contract():
    article = read_article(DATA / "leaky_recap.txt")
    assert [s.heading for s in DEFAULT_CONTRACT.safe_sections(article.sections)] == ["Quick Recap"]
    editors = contract_from_lists(
        ["Quick Recap", "What Happens in the Ending", "Final Thoughts"],
        required=["Quick Recap", "What Happens in the Ending"],
        spoiler_free=["Quick Recap", "Final Thoughts"],
    )
    assert [s.heading for s in editors.safe_sections(article.sections)] == [
        "Quick Recap",
        "Final Thoughts",
    ]
    # A section the contract does not know is kept out of the email.
    assert [s.heading for s in editors.spoiler_sections(article.sections)] == [
        "What Happens in the Ending",
        "The Meaning Behind the Ending",
    ]


def test_a_contract_must_make_sense():
    with pytest.raises(ValueError, match="twice"):
        contract_from_lists(["A", "a"], spoiler_free=["A"])
    with pytest.raises(ValueError, match="not a spoiler"):
        contract_from_lists(["A"])
    with pytest.raises(ValueError, match="empty heading"):
        contract_from_lists(["A", " "], spoiler_free=["A"])
    with pytest.raises(ValueError, match="required lists 'B', which is not in sections"):
        contract_from_lists(["A"], required=["B"], spoiler_free=["A"])


def test_queue_add_reports_contract_problems_by_file_and_line(tmp_path):
    run_cli(["init", "."], tmp_path)
    warned = write(
        tmp_path / "warned.txt",
        "Film (2020): Ending Explained\nA summary.\nFilm (2002): Ending Explained\n"
        "Quick Recap\nIt starts.\nThe Endng\nIt ends.\n",
    )
    out = run_cli(["queue", "add", str(warned)], tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{warned}:3: warning: the repeated title" in out.stderr
    assert f"{warned}:6: warning: unknown section 'The Endng'" in out.stderr
    assert "queued warned.txt" in out.stdout

    broken = write(
        tmp_path / "broken.txt",
        "Film: Ending Explained\nA summary.\nQuick Recap\nIt starts.\n"
        "What Happens in the Ending:\nShe leaves.\nFinal Thoughts\nGood.\nFinal Thoughts\nAgain.\n",
    )
    out = run_cli(["queue", "add", str(broken)], tmp_path)
    assert out.returncode == 1
    assert f"{broken}:5: error: 'What Happens in the Ending:' looks like the heading" in out.stderr
    assert f"{broken}:9: error: section 'Final Thoughts' again (first at line 7)" in out.stderr
    assert "broken.txt was not queued" in out.stderr and "Traceback" not in out.stderr
    assert "broken.txt" not in run_cli(["queue", "list"], tmp_path).stdout


def test_the_teaser_comes_from_the_contracts_spoiler_free_section(tmp_path):
    from newsletter.layouts import teaser_for

    path = write(
        tmp_path / "a.md", "---\ntitle: T\n---\n## Verdict\n\nSee it.\n\n## Ending\n\nX.\n"
    )
    article = read_article(path)
    with pytest.raises(ArticleError, match="refusing to build a teaser from spoiler text"):
        teaser_for(article)  # the default contract does not know "Verdict": a spoiler
    verdict_safe = contract_from_lists(["Verdict"], spoiler_free=["Verdict"])
    assert teaser_for(article, verdict_safe) == "See it."
