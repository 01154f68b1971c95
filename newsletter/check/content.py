"""Text and content: the parts every email needs (plain text, subject, preheader, a working
unsubscribe link) and leftover placeholders."""

from __future__ import annotations

import re

from newsletter.check.document import Document, squash
from newsletter.check.findings import ERROR, WARNING, Finding
from newsletter.check.links import link_problem
from newsletter.subjects import SUBJECT_MAX_CHARS  # the length subjects are cut to

Patterns = tuple[tuple[str, re.Pattern[str]], ...]
# Template syntax our Jinja templates did not evaluate. Article text may hold it too (a piece
# about templating): check_rendered looks for it in a copy without the articles' braces.
TEMPLATE_SYNTAX: Patterns = (
    ("{{", re.compile(r"\{\{")),
    ("{%", re.compile(r"\{%")),
)
# Leftovers wherever they come from: an editor's TK or lorem ipsum, or a per-subscriber
# slot that personalisation did not fill (e.g. a template override that changed its case).
_EDITORIAL: Patterns = (("TK", re.compile(r"\bTK(?:TK)*\b")),)
_FILLER: Patterns = (
    ("lorem ipsum", re.compile(r"\blorem\b", re.IGNORECASE)),
    ("unfilled placeholder", re.compile(r"\bnl_[0-9a-f]{8,}_[a-z_]+", re.IGNORECASE)),
)
PLACEHOLDERS: Patterns = _EDITORIAL + TEMPLATE_SYNTAX + _FILLER


def check_parts(
    doc: Document, text: str | None, subject: str, preheader: str | None
) -> list[Finding]:
    findings = []
    if not text or not text.strip():
        findings.append(
            Finding(
                ERROR,
                "no-text",
                "no plain-text part: some clients and many spam filters need one",
                "text",
            )
        )
    if not subject or not subject.strip():
        findings.append(Finding(ERROR, "no-subject", "the subject is empty", "subject"))
    elif len(subject) > SUBJECT_MAX_CHARS:
        findings.append(
            Finding(
                WARNING,
                "subject-long",
                f"the subject has {len(subject)} characters; phones show about "
                f"{SUBJECT_MAX_CHARS}, so readers see {subject[:SUBJECT_MAX_CHARS].rstrip()!r}",
                "subject",
            )
        )
    if not preheader or not preheader.strip():
        findings.append(
            Finding(
                WARNING,
                "no-preheader",
                "no preheader: inboxes will show the first text of the email instead",
                "preheader",
            )
        )
    elif squash(preheader)[:60] not in squash(doc.all_text()):
        findings.append(
            Finding(
                WARNING,
                "preheader-not-in-html",
                "the preheader text is not in the HTML, so inboxes cannot show it",
                "preheader",
            )
        )
    unsubscribe = [
        link
        for link in doc.links
        if "unsubscribe" in (link.text + " " + link.href).lower()
        and link_problem(link.href) is None
    ]
    if not unsubscribe:
        findings.append(
            Finding(
                ERROR,
                "no-unsubscribe",
                "no working unsubscribe link: the law (CAN-SPAM, GDPR) and Gmail's and Yahoo's "
                "sender rules require one",
                "html",
            )
        )
    elif text and text.strip() and unsubscribe[0].href not in text:
        findings.append(
            Finding(
                WARNING,
                "text-no-unsubscribe",
                "the plain-text part has no unsubscribe link",
                "text",
            )
        )
    return findings


def check_placeholders(
    doc: Document,
    text: str | None,
    subject: str,
    preheader: str | None,
    patterns: Patterns = PLACEHOLDERS,
) -> list[Finding]:
    sources: list[tuple[str, list[tuple[str, int | None]]]] = [
        ("subject", [(subject or "", None)]),
        ("preheader", [(preheader or "", None)]),
        ("html", list(doc.texts)),
        ("text", [(line, n) for n, line in enumerate((text or "").splitlines(), start=1)]),
    ]
    findings = []
    for label, pattern in patterns:
        for part, chunks in sources:
            hits = [(m, chunk, line) for chunk, line in chunks for m in pattern.finditer(chunk)]
            if not hits:
                continue
            match, chunk, line = hits[0]
            where = f"{part}:{line}" if line is not None else part
            times = f" ({len(hits)} times)" if len(hits) > 1 else ""
            context = squash(chunk[max(0, match.start() - 30) : match.end() + 30])
            findings.append(
                Finding(
                    ERROR,
                    "placeholder",
                    f"leftover placeholder {label!r}{times}: ...{context}...",
                    where,
                )
            )
    return findings
