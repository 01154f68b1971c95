"""Accessibility basics: a language for screen readers, layout tables marked as such."""

from __future__ import annotations

from newsletter.check.document import Document
from newsletter.check.findings import WARNING, Finding


def check_accessibility(doc: Document) -> list[Finding]:
    findings = []
    root = next((e for e in doc.elements if e.tag == "html"), None)
    if root is None or not (root.attrs.get("lang") or "").strip():
        findings.append(
            Finding(
                WARNING,
                "no-lang",
                "no lang on <html>: screen readers may read the email in the wrong language",
                f"html:{root.line}" if root else "html",
            )
        )
    bare = [e for e in doc.elements if e.tag == "table" and not e.attrs.get("role")]
    if bare:
        findings.append(
            Finding(
                WARNING,
                "table-role",
                f'{len(bare)} table(s) without role="presentation": screen readers announce '
                "layout tables as data, row by row",
                f"html:{bare[0].line}",
            )
        )
    return findings
