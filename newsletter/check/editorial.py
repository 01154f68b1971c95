"""Editorial rules: the article contract and the spoiler-leak check, on the articles of an
issue rather than on its HTML. They run in `newsletter check` on article files and on stored
issues, and before every send; a leak is a warning unless `[check] spoiler_leak = "error"`."""

from __future__ import annotations

from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from newsletter.articles import Article, Section, read_article
from newsletter.check.findings import ERROR, WARNING, Finding
from newsletter.conformance import validate_file
from newsletter.contract import DEFAULT_CONTRACT, Contract
from newsletter.exceptions import ArticleError
from newsletter.layouts import DIGEST, layout_of, teaser_for
from newsletter.spoilers import find_leaks, inbox_of

if TYPE_CHECKING:
    from newsletter.records import IssueRecord, PublishedArticle
    from newsletter.settings import Settings
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
    contract: Contract = DEFAULT_CONTRACT,
    spoiler_leak: str = WARNING,
    **inbox: Any,
) -> list[Finding]:
    """Both editorial rules for the articles of one issue; `inbox` is what the reader sees
    before opting in, as `check_spoiler_leaks` takes it (subject, preheader, layout)."""
    return check_contract(articles, contract) + check_spoiler_leaks(
        articles, contract=contract, severity=spoiler_leak, **inbox
    )


def check_stored_issue(settings: Settings, store: Store, issue: IssueRecord) -> list[Finding]:
    """Both editorial rules for an issue already made, on what went out: its subject and
    preheader as stored, each article read again from its file in issues/ (the issue row
    keeps the email and the article pages, not the sources). A file edited since is checked
    as it is now, and said so. An article whose file is gone or unreadable, or an issue that
    names no article files any more (queued again since), is checked for leaks on its stored
    article page instead; the contract check, which needs the file, is reported as not run."""
    rows = store.articles.issue_articles(issue.id)
    pages = store.issues.issue_pages(issue.id)
    layout = issue.layout or layout_of(issue.html)
    contract, severity = settings.contract, settings.spoiler_leak
    if not rows:
        return _from_pages_only(issue, pages, layout, severity)
    by_title = {page.title: page for page in pages}
    findings: list[Finding] = []
    for n, row in enumerate(rows, start=1):
        path = settings.issues_dir / row.filename
        try:
            article = read_article(path, headings=contract.headings)
        except ArticleError as exc:
            page = by_title.get(row.title) or (pages[n - 1] if len(pages) == len(rows) else None)
            if page is None:
                also = " and the preheader" if n == 1 else ""
                ran = (
                    "its article contract and spoiler-leak checks could not run (no article "
                    f"page was stored either), so the subject{also} were not compared with "
                    "its ending"
                )
            else:
                ran = (
                    "its article contract check could not run; its spoiler-leak check ran on "
                    f"the article page stored with the issue, /articles/{page.slug}"
                )
            findings.append(
                Finding(
                    WARNING,
                    NOT_RUN,
                    f"{row.title!r} of issue {issue.id} cannot be read again "
                    f"({exc.message}): {ran}",
                    f"{path}:{exc.line}" if exc.line else str(path),
                )
            )
            if page is not None:
                findings += _page_leaks(issue, page, n, layout, severity)
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
        findings += check_contract([article], contract)
        safe = contract.safe_sections(article.sections)
        inbox = inbox_of(
            article,
            safe,
            subject=issue.subject,
            preheader=issue.preheader if n == 1 else None,
            teaser=teaser_for(article, contract),
            card=f"card {n}" if layout == DIGEST else None,
        )
        spoilers = contract.spoiler_sections(article.sections)
        findings += [
            Finding(severity, "spoiler-leak", leak.message, leak.location)
            for leak in find_leaks(article, inbox, spoilers, safe=safe)
        ]
    return findings


def _from_pages_only(
    issue: IssueRecord, pages: Sequence[PublishedArticle], layout: str, severity: str
) -> list[Finding]:
    """An issue whose articles' queue rows are not its own any more: its article pages are
    all that is left of them."""
    if not pages:
        return [
            Finding(
                WARNING,
                NOT_RUN,
                f"issue {issue.id} names no article file and has no article page: the article "
                "contract and spoiler-leak checks could not run, only its email was checked; "
                "run 'newsletter check FILE' on its article files",
                f"issue {issue.id}",
            )
        ]
    titles = ", ".join(repr(p.title) for p in pages)
    findings = [
        Finding(
            WARNING,
            NOT_RUN,
            f"issue {issue.id} names no article file any more (it carried {titles}; queued "
            "again since?): the article contract check could not run; the spoiler-leak check "
            "ran on the article pages stored with the issue",
            f"issue {issue.id}",
        )
    ]
    for n, page in enumerate(pages, start=1):
        findings += _page_leaks(issue, page, n, layout, severity)
    return findings


def _page_leaks(
    issue: IssueRecord, page: PublishedArticle, n: int, layout: str, severity: str
) -> list[Finding]:
    """The leak check on a stored article page: its spoiler-free sections, then the ones
    behind its reveal, against the issue's subject, preheader and the stored teaser."""
    article, safe, spoilers = _page_article(page)
    inbox = inbox_of(
        article,
        safe,
        subject=issue.subject,
        preheader=issue.preheader if n == 1 else None,
        teaser=page.teaser,
        card=f"card {n}" if layout == DIGEST else None,
    )
    return [
        Finding(
            severity,
            "spoiler-leak",
            f"{leak.sentence!r} (in the {', '.join(leak.where)}) gives the ending away: "
            f"{leak.phrase!r} echoes {leak.section!r} on the stored article page: "
            f"{leak.echoed!r}",
            f"issue {issue.id}, /articles/{page.slug}",
        )
        for leak in find_leaks(article, inbox, spoilers, safe=safe)
    ]


def _page_article(
    page: PublishedArticle,
) -> tuple[Article, tuple[Section, ...], tuple[Section, ...]]:
    """An article page's sections as an Article: (article, spoiler-free, behind the reveal).
    No file lines: the page is all that is stored."""
    parser = _PageSections()
    parser.feed(page.html)
    parser.close()
    safe: list[Section] = []
    spoilers: list[Section] = []
    for heading, paragraphs, hidden in parser.sections:
        section = Section(heading, "\n\n".join(paragraphs), Markup(""), 0)
        (spoilers if hidden else safe).append(section)
    article = Article(
        path=Path(f"/articles/{page.slug}"),
        title=page.title,
        summary=None,
        year=None,
        rating=None,
        author=None,
        sections=(*safe, *spoilers),
    )
    return article, tuple(safe), tuple(spoilers)


class _PageSections(HTMLParser):
    """The sections of an article page (templates/article.html.j2): each `h2.section-title`
    with the paragraphs and list items after it, and whether it sits inside the reveal."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str, list[str], bool]] = []
        self._reveal = 0
        self._capture: str | None = None
        self._buffer: list[str] = []
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self._done or "footer" in classes:
            self._done = True
            return
        if tag == "details":
            self._reveal += 1
        elif tag == "h2" and "section-title" in classes:
            self._capture, self._buffer = "h2", []
        elif tag in ("p", "li") and self.sections and self._capture is None:
            self._capture, self._buffer = tag, []

    def handle_endtag(self, tag: str) -> None:
        if self._done:
            return
        if tag == "details":
            self._reveal -= 1
        elif tag == self._capture:
            text = " ".join("".join(self._buffer).split())
            if tag == "h2":
                self.sections.append((text, [], self._reveal > 0))
            elif text:
                self.sections[-1][1].append(text)
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture is not None and not self._done:
            self._buffer.append(data)
