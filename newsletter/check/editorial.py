"""Editorial rules: the article contract and the spoiler-leak check, on the articles of an
issue rather than on its HTML. They run in `newsletter check` on article files and before
every send; a leak is a warning unless `[check] spoiler_leak = "error"`."""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.articles import Article
from newsletter.check.findings import ERROR, WARNING, Finding
from newsletter.conformance import validate_file
from newsletter.contract import DEFAULT_CONTRACT, Contract
from newsletter.layouts import DIGEST, teaser_for
from newsletter.spoilers import find_leaks, inbox_of

LEAK_SEVERITIES = (WARNING, ERROR)


def check_contract(
    articles: Sequence[Article], contract: Contract = DEFAULT_CONTRACT
) -> list[Finding]:
    """Each article file against the contract, by file and line."""
    findings = []
    for article in articles:
        for problem in validate_file(article.path, contract):
            where = f"{problem.path}:{problem.line}" if problem.line else str(problem.path)
            findings.append(
                Finding(problem.severity, f"contract-{problem.code}", problem.message, where)
            )
    return findings


def check_spoiler_leaks(
    articles: Sequence[Article],
    *,
    subject: str,
    preheader: str | None,
    layout: str,
    contract: Contract = DEFAULT_CONTRACT,
    severity: str = WARNING,
) -> list[Finding]:
    """Every sentence a reader sees before opting in (subject, preheader, teaser, card and
    the spoiler-free sections) that echoes a spoiler section of the same article."""
    if severity not in LEAK_SEVERITIES:
        raise ValueError(f"spoiler_leak must be one of {', '.join(LEAK_SEVERITIES)}")
    findings = []
    for n, article in enumerate(articles, start=1):
        safe = contract.safe_sections(article.sections)
        inbox = inbox_of(
            article,
            safe,
            subject=subject,
            preheader=preheader if n == 1 else None,
            teaser=teaser_for(article, contract),
            card=f"card {n}" if layout == DIGEST else None,
        )
        for leak in find_leaks(
            article, inbox, contract.spoiler_sections(article.sections), safe=safe
        ):
            findings.append(Finding(severity, "spoiler-leak", leak.message, leak.location))
    return findings


def check_articles(
    articles: Sequence[Article],
    *,
    subject: str,
    preheader: str | None,
    layout: str,
    contract: Contract = DEFAULT_CONTRACT,
    spoiler_leak: str = WARNING,
) -> list[Finding]:
    """Both editorial rules for the articles of one issue."""
    findings = check_contract(articles, contract)
    findings += check_spoiler_leaks(
        articles,
        subject=subject,
        preheader=preheader,
        layout=layout,
        contract=contract,
        severity=spoiler_leak,
    )
    return findings
