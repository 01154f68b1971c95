"""The article contract: the sections a piece must have, in which order, and which of them
give the ending away.

Editors set it in `[articles]` of newsletter.toml; the default is the sample format's. The
contract decides what the email may show before the reader opts in (the non-spoiler
sections) and what stays behind the reveal, so a renamed or unknown section is treated as a
spoiler, never the other way round. `validate` reports what an editor must fix, by file and
line, before the piece can be trusted to split correctly.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter.articles import Article, Section, read_article
from newsletter.exceptions import ArticleError

ERROR = "error"
WARNING = "warning"

# How close a line must be to a known heading to be taken for a mistyped one.
SUGGEST_CUTOFF = 0.6
HEADING_LOOKALIKE = 0.85
# A title repeated with a typo is still meant as the title when it is this similar.
TITLE_SIMILARITY = 0.75
_MARKUP = re.compile(r"^[#*_>\s]+|[*_:.\s]+$")


def normalize_heading(heading: str) -> str:
    """Case, spacing and Markdown marks do not make a different heading."""
    return " ".join(_MARKUP.sub("", heading).split()).lower()


@dataclass(frozen=True)
class SectionRule:
    """One section of the contract: its heading, whether a piece must have it, and whether
    it gives the ending away (and so never appears in the email)."""

    heading: str
    required: bool = False
    spoiler: bool = True

    @property
    def key(self) -> str:
        return normalize_heading(self.heading)


@dataclass(frozen=True)
class Contract:
    """The sections of a piece, in order."""

    sections: tuple[SectionRule, ...]

    def __post_init__(self) -> None:
        keys = [rule.key for rule in self.sections]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        if duplicated:
            raise ValueError(f"the contract lists {duplicated[0]!r} twice")
        if not any(not rule.spoiler for rule in self.sections):
            raise ValueError("the contract needs one section that is not a spoiler (the recap)")

    @property
    def headings(self) -> tuple[str, ...]:
        return tuple(rule.heading for rule in self.sections)

    def rule_for(self, heading: str) -> SectionRule | None:
        key = normalize_heading(heading)
        return next((rule for rule in self.sections if rule.key == key), None)

    def is_spoiler(self, section: Section) -> bool:
        """Unknown sections count as spoilers: the safe side of a mistake."""
        rule = self.rule_for(section.heading)
        return rule is None or rule.spoiler

    def spoiler_sections(self, article: Article) -> tuple[Section, ...]:
        return tuple(s for s in article.sections if self.is_spoiler(s))

    def safe_sections(self, article: Article) -> tuple[Section, ...]:
        """What the email may show before the reader opts in, in the article's order."""
        return tuple(s for s in article.sections if not self.is_spoiler(s))

    def suggest(self, heading: str) -> str | None:
        """The known heading closest to a mistyped one."""
        keys = {rule.key: rule.heading for rule in self.sections}
        key = normalize_heading(heading)
        close = difflib.get_close_matches(key, list(keys), n=1, cutoff=SUGGEST_CUTOFF)
        if close:
            return keys[close[0]]
        # "Themes" for "Themes and Symbolism": every word of it is in one known heading.
        words = set(key.split())
        containing = [k for k in keys if words and words <= set(k.split())]
        return keys[containing[0]] if len(containing) == 1 else None


# The sample format's sections. Only the recap is required by default: it is what the email
# shows and the teaser is cut from; editors who want more set `required = true` in
# `[[articles.sections]]`.
DEFAULT_CONTRACT = Contract(
    (
        SectionRule("Quick Recap", required=True, spoiler=False),
        SectionRule("What Happens in the Ending"),
        SectionRule("The Meaning Behind the Ending"),
        SectionRule("Character Arcs and Resolution"),
        SectionRule("Alternate Interpretations"),
        SectionRule("Themes and Symbolism"),
        SectionRule("Final Thoughts"),
    )
)


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


def _check_title(article: Article, report) -> None:
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


def _check_lookalikes(section: Section, contract: Contract, section_path: Path, report) -> None:
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


def contract_from_lists(
    sections: Sequence[str], required: Iterable[str] = (), spoiler_free: Iterable[str] = ()
) -> Contract:
    """A contract from the three lists of `[articles]`: every section heading in order, the
    required ones, and the ones that do not give the ending away. Raises ValueError naming a
    heading that `required` or `spoiler_free` lists but `sections` does not."""
    keys = {normalize_heading(h) for h in sections}
    for name, listed in (("required", required), ("spoiler_free", spoiler_free)):
        for heading in listed:
            if normalize_heading(heading) not in keys:
                raise ValueError(f"{name} lists {heading!r}, which is not in sections")
    must = {normalize_heading(h) for h in required}
    safe = {normalize_heading(h) for h in spoiler_free}
    rules = []
    for heading in sections:
        if not heading.strip():
            raise ValueError("sections has an empty heading")
        key = normalize_heading(heading)
        rules.append(SectionRule(heading.strip(), required=key in must, spoiler=key not in safe))
    return Contract(tuple(rules))
