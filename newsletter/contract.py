"""The article contract: the sections a piece must have, in which order, and which of them
give the ending away.

Editors set it in `[articles]` of newsletter.toml; the default is the sample format's. The
contract decides what the email may show before the reader opts in (the spoiler-free
sections) and what stays behind the divider or the reveal, so a renamed or unknown section is
treated as a spoiler, never the other way round. How a file is held to it is
`newsletter.conformance`. Standard library only: the settings build a contract.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

# How close a heading must be to a known one to be suggested for it.
SUGGEST_CUTOFF = 0.6
_MARKUP = re.compile(r"^[#*_>\s]+|[*_:.\s]+$")


class Headed(Protocol):
    """Anything with a section heading (an article's `Section`)."""

    @property
    def heading(self) -> str: ...


S = TypeVar("S", bound=Headed)


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

    def is_spoiler(self, section: Headed) -> bool:
        """Unknown sections count as spoilers: the safe side of a mistake."""
        rule = self.rule_for(section.heading)
        return rule is None or rule.spoiler

    def spoiler_sections(self, sections: Iterable[S]) -> tuple[S, ...]:
        """The sections (of an article) that give the ending away, in their order."""
        return tuple(s for s in sections if self.is_spoiler(s))

    def safe_sections(self, sections: Iterable[S]) -> tuple[S, ...]:
        """What the email may show before the reader opts in, in the article's order."""
        return tuple(s for s in sections if not self.is_spoiler(s))

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
