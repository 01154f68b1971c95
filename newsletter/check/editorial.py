"""Editorial rules: the article contract and the spoiler-leak check, on the articles of an
issue rather than on its HTML. They run in `newsletter check` on article files and on stored
issues, and before every send; a leak is a warning unless `[check] spoiler_leak = "error"`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from newsletter.articles import Article, read_article
from newsletter.check.findings import ERROR, WARNING, Finding
from newsletter.conformance import validate_file
from newsletter.contract import DEFAULT_CONTRACT, Contract
from newsletter.exceptions import ArticleError
from newsletter.layouts import DIGEST, layout_of, teaser_for
from newsletter.spoilers import find_leaks, inbox_of

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.records import IssueRecord
    from newsletter.store import Store

LEAK_SEVERITIES = (WARNING, ERROR)
# A stored issue's article the editorial rules could not read, or read as edited since.
NOT_RUN, EDITED = "editorial-not-run", "editorial-edited"


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


def check_stored_issue(settings: Settings, store: Store, issue: IssueRecord) -> list[Finding]:
    """Both editorial rules for an issue already made: its subject and preheader as they went
    out, its articles read again from their files in issues/ (the issue row keeps the email
    and the article pages, not the articles' sources). An article that cannot be read, or an
    issue that names no article files, is reported with the checks that could not run; a
    file edited since the issue was made is checked as it is now, and said so."""
    rows = store.queue.issue_articles(issue.id)
    if not rows:
        titles = ", ".join(repr(p.title) for p in store.queue.issue_pages(issue.id))
        carried = f" (it carried {titles})" if titles else ""
        return [
            Finding(
                WARNING,
                NOT_RUN,
                f"issue {issue.id} names no article file{carried}: the article contract and "
                "spoiler-leak checks could not run, only its email was checked; run "
                "'newsletter check FILE' on the article files",
                f"issue {issue.id}",
            )
        ]
    findings: list[Finding] = []
    articles: list[Article] = []
    lead_read = True
    for n, row in enumerate(rows):
        path = settings.issues_dir / row.filename
        try:
            article = read_article(path, headings=settings.contract.headings)
        except ArticleError as exc:
            lead_read = lead_read and n > 0
            also = " and the preheader" if n == 0 else ""
            findings.append(
                Finding(
                    WARNING,
                    NOT_RUN,
                    f"{row.title!r} of issue {issue.id} cannot be read again ({exc.message}): "
                    f"its article contract and spoiler-leak checks could not run, so the "
                    f"subject{also} were not compared with its ending",
                    f"{path}:{exc.line}" if exc.line else str(path),
                )
            )
            continue
        if path.stat().st_mtime > issue.created_at.timestamp():
            findings.append(
                Finding(
                    WARNING,
                    EDITED,
                    f"{row.filename} was edited after issue {issue.id} was made: the checks "
                    "below read the file as it is now, not as it went out",
                    str(path),
                )
            )
        articles.append(article)
    if articles:
        findings += check_articles(
            articles,
            subject=issue.subject,
            preheader=issue.preheader if lead_read else None,
            layout=layout_of(issue.html),
            contract=settings.contract,
            spoiler_leak=settings.spoiler_leak,
        )
    return findings
