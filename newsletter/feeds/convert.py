"""A feed entry as an article file: its HTML converted to Markdown by markdownify, each
heading a section, mapped through the article contract (a heading matching a contract
section takes its spelling; a close one is mapped only to a spoiler section, so a mapping
can never move text in front of the reader's choice), the text before the first heading the
summary. Whether the result keeps the contract is `conformance`'s call, as for any file."""

from __future__ import annotations

import re

import yaml
from markdownify import markdownify

from newsletter.contract import Contract
from newsletter.feeds.parse import Entry

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SUMMARY_CHARS = 300


def contract_heading(heading: str, contract: Contract) -> str:
    """The contract's spelling of a heading: its own section, else the closest spoiler one
    (never a spoiler-free section by guess), else the heading as written."""
    rule = contract.rule_for(heading)
    if rule is not None:
        return rule.heading
    suggested = contract.suggest(heading)
    close = contract.rule_for(suggested) if suggested else None
    return close.heading if close is not None and close.spoiler else heading.strip()


def to_markdown(entry: Entry, contract: Contract) -> str:
    """The article file (Markdown with front matter) for a feed entry."""
    body = markdownify(entry.html, heading_style="ATX", strip=["img"], bullets="-")
    lead: list[str] = []
    sections: list[str] = []
    for line in body.splitlines():
        match = _HEADING.match(line)
        if match:
            heading = " ".join(re.sub(r"[*_`]", "", match.group(2)).split())
            sections.append(f"## {contract_heading(heading, contract)}")
        elif sections:
            sections.append(line.rstrip())
        else:
            lead.append(line.strip())
    meta: dict[str, str] = {"title": entry.title}
    summary = " ".join(" ".join(lead).split())
    if summary and len(sections) > 0:
        cut = summary[:SUMMARY_CHARS]
        meta["summary"] = cut if len(summary) <= SUMMARY_CHARS else cut.rsplit(" ", 1)[0] + "…"
    if entry.author:
        meta["author"] = entry.author
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=10_000)
    text = "\n".join(sections) if sections else "\n".join(lead)
    return f"---\n{front}---\n\n{_squeeze(text)}\n"


def _squeeze(text: str) -> str:
    """At most one blank line in a row; none at the ends."""
    return re.sub(r"\n{3,}", "\n\n", text).strip()
