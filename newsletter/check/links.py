"""Links and images: what will not work from an inbox (relative, empty, anchors, odd
schemes, local hosts) and images without alt text or a full address."""

from __future__ import annotations

from urllib.parse import urlsplit

from newsletter.addresses import is_local_host
from newsletter.check.document import Document, unique
from newsletter.check.findings import ERROR, WARNING, Finding

ALLOWED_SCHEMES = ("http", "https", "mailto", "tel")


def link_problem(href: str) -> tuple[str, str] | None:
    """(code, explanation) when `href` will not work from an inbox, else None."""
    stripped = href.strip()
    if not stripped:
        return "link-empty", "empty link"
    if stripped.startswith("#"):
        return "link-anchor", "link to an anchor inside the page (most inboxes break these)"
    if any(ch.isspace() for ch in stripped):
        return "link-space", "link with spaces in it"
    parts = urlsplit(stripped)
    scheme = parts.scheme.lower()
    if not scheme:
        return "link-relative", "relative link (it has no https:// and cannot work in an inbox)"
    if scheme not in ALLOWED_SCHEMES:
        return "link-scheme", f"{scheme}: link (only http(s), mailto and tel links work in email)"
    if scheme in ("http", "https") and not parts.hostname:
        return "link-no-host", "link without a host name"
    return None


def check_links(doc: Document) -> list[Finding]:
    grouped: dict[str, list[tuple[str, int, str]]] = {}
    local: list[tuple[str, int]] = []
    for link in doc.links:
        problem = link_problem(link.href)
        if problem:
            code, why = problem
            grouped.setdefault(code, []).append((link.href, link.line, why))
            continue
        host = urlsplit(link.href.strip()).hostname
        if host and is_local_host(host):
            local.append((link.href, link.line))
    findings = []
    for code, items in grouped.items():
        examples = ", ".join(repr(href) for href in unique(h for h, _, _ in items)[:3])
        count = f"{len(items)} links" if len(items) > 1 else "a link"
        findings.append(
            Finding(
                ERROR,
                code,
                f"{count}: {items[0][2]}: {examples}",
                f"html:{items[0][1]}",
            )
        )
    if local:
        hosts = ", ".join(unique(urlsplit(h.strip()).hostname or "" for h, _ in local)[:3])
        findings.append(
            Finding(
                WARNING,
                "link-local",
                f"{len(local)} link(s) point to {hosts}, which subscribers cannot reach: "
                "set base_url to the newsletter's public address",
                f"html:{local[0][1]}",
            )
        )
    return findings


def check_images(doc: Document) -> list[Finding]:
    findings = []
    no_alt = [img for img in doc.elements if img.tag == "img" and "alt" not in img.attrs]
    if no_alt:
        first = no_alt[0]
        findings.append(
            Finding(
                ERROR,
                "img-alt",
                f"{len(no_alt)} image(s) without alt text (first: {first.attrs.get('src')!r}); "
                'many inboxes block images, so say what it shows, or alt="" if decorative',
                f"html:{first.line}",
            )
        )
    relative = [
        img
        for img in doc.elements
        if img.tag == "img"
        and urlsplit((img.attrs.get("src") or "").strip()).scheme.lower()
        not in ("http", "https", "cid", "data")
    ]
    if relative:
        first = relative[0]
        findings.append(
            Finding(
                ERROR,
                "img-src",
                f"{len(relative)} image(s) with a relative or empty src "
                f"(first: {first.attrs.get('src')!r}): use a full https:// address",
                f"html:{first.line}",
            )
        )
    return findings
