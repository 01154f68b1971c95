"""Lint a finished email before it goes out: what would make it clipped, broken, unreadable
or non-compliant in the inboxes that matter.

Errors are things to fix before sending (Gmail would clip it, no unsubscribe link, broken
links, leftover placeholders); warnings are worth a look (a long subject, CSS or HTML that
some major clients drop). Client support comes from the caniemail data shipped in `data/`
(MIT, refreshed by scripts/refresh-caniemail); findings about it are grouped by feature, so
an editor reads one line per feature, not one per element.

Modules, by kind of rule: `size` (Gmail clipping), `content` (text part, subject,
preheader, unsubscribe link, leftover placeholders), `links` (links and images),
`accessibility`, `clients` (HTML/CSS client support, from `caniemail` data read with `css`);
`document` parses the HTML once for all of them, `findings` is what they report and
`runner` runs them.
"""

from newsletter.check.caniemail import (
    ACCEPTED_FALLBACKS,
    MAJOR_CLIENTS,
    Catalog,
    find_caniemail_json,
    load_catalog,
)
from newsletter.check.content import SUBJECT_MAX_CHARS
from newsletter.check.findings import ERROR, WARNING, Finding, format_findings, has_errors
from newsletter.check.runner import (
    CheckedIssue,
    check_email,
    check_issue,
    check_rendered,
    check_settings,
    check_source,
)
from newsletter.check.size import NEAR_CLIP_RATIO

__all__ = [
    "ACCEPTED_FALLBACKS",
    "ERROR",
    "MAJOR_CLIENTS",
    "NEAR_CLIP_RATIO",
    "SUBJECT_MAX_CHARS",
    "WARNING",
    "Catalog",
    "CheckedIssue",
    "Finding",
    "check_email",
    "check_issue",
    "check_rendered",
    "check_settings",
    "check_source",
    "find_caniemail_json",
    "format_findings",
    "has_errors",
    "load_catalog",
]
