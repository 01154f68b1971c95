"""Holding an article file to the article contract: what an editor must fix, by file and line,
before the piece can be trusted to split into what the email shows and what it hides.

Reported: a missing required section, sections out of order, an unknown heading (with the
closest known one), a duplicated or empty section, a line that looks like a heading but was
read as text (it would glue the next section to the previous one, maybe an ending to the
recap), and a repeated title that disagrees with the first.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter.articles import Article, Section, read_article
from newsletter.contract import DEFAULT_CONTRACT, Contract, normalize_heading
from newsletter.exceptions import ArticleError

ERROR = "error"
WARNING = "warning"

# How close a paragraph must be to a known heading to be taken for a mistyped one.
HEADING_LOOKALIKE = 0.85

Report = Callable[[int | None, str, str, str], None]


@dataclass(frozen=True)
class ContractProblem:
    """One way a file breaks the contract, with the line to look at."""

    path: Path
    line: int | None
    severity: str
    code: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.severity}: {self.message}"


def validate_file(path: Path | str, contract: Contract = DEFAULT_CONTRACT) -> list[ContractProblem]:
    """Read `path` leniently (empty sections kept) and check it against `contract`. A file
    that cannot be read at all is one problem, with the reader's own line."""
    path = Path(path)
    try:
        article = read_article(path, headings=contract.headings, strict=False)
    except ArticleError as exc:
        return [ContractProblem(exc.path, exc.line, ERROR, "unreadable", exc.message)]
    return validate(article, contract)


def validate(article: Article, contract: Contract = DEFAULT_CONTRACT) -> list[ContractProblem]:
    """Every way `article` breaks `contract`, in file order."""
    problems: list[ContractProblem] = []

    def report(line: int | None, severity: str, code: str, message: str) -> None:
        problems.append(ContractProblem(article.path, line, severity, code, message))

    _check_title(article, report)
    order = {rule.key: i for i, rule in enumerate(contract.sections)}
    first_seen: dict[str, Section] = {}
    placed: list[tuple[int, Section]] = []
    for section in article.sections:
        rule = contract.rule_for(section.heading)
        if rule is None:
            hint = contract.suggest(section.heading)
            report(
                section.line,
                WARNING,
                "unknown-heading",
                f"unknown section {section.heading!r}"
                + (f": did you mean {hint!r}?" if hint else "")
                + " (it is kept out of the email as a spoiler)",
            )
        elif rule.key in first_seen:
            first = first_seen[rule.key]
            report(
                section.line,
                ERROR,
                "duplicate-section",
                f"section {rule.heading!r} again (first at line {first.line})",
            )
        else:
            first_seen[rule.key] = section
            placed.append((order[rule.key], section))
        if not section.text.strip():
            report(section.line, ERROR, "empty-section", f"section {section.heading!r} is empty")
        _check_lookalikes(section, contract, article.path, report)

    in_order = _longest_increasing([i for i, _ in placed])
    for k, (i, section) in enumerate(placed):
        if k in in_order:
            continue
        before = next((s for j, s in placed[:k] if j > i), None)
        after = next((s for j, s in placed[k + 1 :] if j < i), None)
        if before is not None:
            where = f"it should come before {before.heading!r} (line {before.line})"
        elif after is not None:
            where = f"it should come after {after.heading!r} (line {after.line})"
        else:  # pragma: no cover - a section off the longest run has one or the other
            where = "see the contract's order"
        report(section.line, WARNING, "out-of-order", f"section {section.heading!r}: {where}")

    for n, rule in enumerate(contract.sections):
        if not rule.required or rule.key in first_seen:
            continue
        following = next(
            (first_seen[r.key] for r in contract.sections[n + 1 :] if r.key in first_seen), None
        )
        line = following.line if following else _last_line(article)
        where = f"before {following.heading!r}" if following else "at the end"
        report(
            line,
            ERROR,
            "missing-section",
            f"required section {rule.heading!r} is missing (expected {where})",
        )
    problems.sort(key=lambda p: p.line or 0)
    return problems


def _last_line(article: Article) -> int | None:
    if not article.sections:
        return None
    last = article.sections[-1]
    return max((last.line, *last.lines))


def _check_title(article: Article, report: Report) -> None:
    if len(article.title_lines) < 2:
        return
    (first_line, first), *repeats = article.title_lines
    for line, text in repeats:
        if text != first:
            report(
                line,
                WARNING,
                "title-mismatch",
                f"the repeated title {text!r} differs from the title on line {first_line} "
                f"({first!r})",
            )


def _check_lookalikes(
    section: Section, contract: Contract, section_path: Path, report: Report
) -> None:
    """Paragraphs that look like a section heading the reader did not take as one: the text
    that follows them is counted as part of `section`, which may put an ending into the
    recap."""
    paragraphs = section.text.split("\n\n") if section.text else []
    lines = section.lines if len(section.lines) == len(paragraphs) else ()
    for k, paragraph in enumerate(paragraphs):
        candidate = " ".join(paragraph.split())
        if not candidate or len(candidate) > 80 or "\n" in paragraph.strip():
            continue
        key = normalize_heading(candidate)
        rule = contract.rule_for(candidate)
        if rule is None:
            close = difflib.get_close_matches(
                key, [r.key for r in contract.sections], n=1, cutoff=HEADING_LOOKALIKE
            )
            rule = contract.rule_for(close[0]) if close else None
        if rule is None:
            continue
        line = lines[k] if lines else section.line
        how = (
            f"write it as '## {rule.heading}' with text after it"
            if section_path.suffix.lower() in (".md", ".markdown")
            else "put it alone on its line, without punctuation, with text after it"
        )
        severity = ERROR if rule.spoiler and not contract.is_spoiler(section) else WARNING
        report(
            line,
            severity,
            "unparsed-heading",
            f"{candidate!r} looks like the heading {rule.heading!r} but was read as text of "
            f"{section.heading!r}: {how}",
        )


def _longest_increasing(values: Sequence[int]) -> set[int]:
    """Positions of one longest strictly increasing run: the sections already in order."""
    if not values:
        return set()
    best = [1] * len(values)
    back = [-1] * len(values)
    for i in range(len(values)):
        for j in range(i):
            if values[j] < values[i] and best[j] + 1 > best[i]:
                best[i], back[i] = best[j] + 1, j
    end = max(range(len(values)), key=lambda i: (best[i], -i))
    keep = set()
    while end != -1:
        keep.add(end)
        end = back[end]
    return keep
