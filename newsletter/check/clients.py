"""Client support: HTML and CSS features that major email clients drop, one warning per
feature naming the clients, from the caniemail data."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from newsletter.check.caniemail import (
    CANIEMAIL_ENV,
    Catalog,
    caniemail_json_path,
    find_caniemail_json,
    load_catalog,
)
from newsletter.check.css import css_rules, declarations
from newsletter.check.document import Document
from newsletter.check.findings import WARNING, Finding


@dataclass(frozen=True)
class _Use:
    slug: str
    line: int
    # None: every client reads it (inline styles, elements); else the clients that apply it.
    clients: frozenset[str] | None = None


def check_client_support(doc: Document, accept: set[str], clients: Sequence[str]) -> list[Finding]:
    path = find_caniemail_json()
    if path is None:
        wanted = caniemail_json_path()
        where = (
            f"${CANIEMAIL_ENV} names {wanted}, which does not exist"
            if os.environ.get(CANIEMAIL_ENV)
            else f"{wanted} is missing from this installation: reinstall newsletter"
        )
        return [
            Finding(
                WARNING,
                "caniemail-missing",
                f"email-client support data (caniemail) not found, so CSS and HTML were not "
                f"checked against email clients: {where}",
            )
        ]
    try:
        catalog = load_catalog(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [
            Finding(
                WARNING,
                "caniemail-missing",
                f"cannot read the email-client support data {path} ({exc}), so CSS and HTML "
                "were not checked against email clients",
            )
        ]
    uses = list(_html_uses(doc, catalog)) + list(_css_uses(doc, catalog, clients))
    problems: dict[str, tuple[set[str], list[int]]] = {}
    for use in uses:
        if use.slug in accept or use.slug not in catalog.features:
            continue
        applies = clients if use.clients is None else [c for c in clients if c in use.clients]
        dropped = {c for c in applies if catalog.support(use.slug, c) == "n"}
        if dropped:
            seen, lines = problems.setdefault(use.slug, (set(), []))
            seen |= dropped
            lines.append(use.line)
    findings = []
    for slug, (dropped, lines) in sorted(problems.items(), key=lambda item: min(item[1][1])):
        title = catalog.features[slug]["title"]
        names = _client_list(catalog, [c for c in clients if c in dropped])
        times = f" (used {len(lines)} times)" if len(lines) > 1 else ""
        findings.append(
            Finding(
                WARNING,
                slug,
                f"{slug}: {title} is unsupported in {names}{times}",
                f"html:{min(lines)}",
            )
        )
    return findings


def _client_list(catalog: Catalog, clients: Sequence[str]) -> str:
    """'Gmail (Desktop Webmail, iOS), Outlook (Windows)': grouped by family, data order."""
    families: dict[str, list[str]] = {}
    for client in clients:
        family, platform = client.split(".", 1)
        families.setdefault(family, []).append(catalog.platform_names.get(platform, platform))
    return ", ".join(
        f"{catalog.family_names.get(family, family)} ({', '.join(platforms)})"
        for family, platforms in families.items()
    )


def _html_uses(doc: Document, catalog: Catalog) -> Iterator[_Use]:
    if doc.doctype is not None:
        yield _Use("html-doctype", doc.doctype)
    for line in doc.comments:
        yield _Use("html-comments", line)
    for element in doc.elements:
        tag, attrs = element.tag, element.attrs
        kind = (attrs.get("type") or "").lower()
        slug = catalog.elements.get(f"{tag}[{kind}]") if kind else None
        slug = slug or catalog.elements.get(tag)
        if slug:
            yield _Use(slug, element.line)
        for name in attrs:
            if name in catalog.attributes:
                yield _Use(catalog.attributes[name], element.line)
        if tag == "meta" and (attrs.get("name") or "").lower() == "color-scheme":
            yield _Use("html-meta-color-scheme", element.line)
        if tag == "a":
            href = (attrs.get("href") or "").strip().lower()
            if href.startswith("#"):
                yield _Use("html-anchor-links", element.line)
            elif href.startswith("mailto:"):
                yield _Use("html-mailto-links", element.line)
        if tag == "img":
            src = (attrs.get("src") or "").strip().lower()
            if src.startswith("data:"):
                slug = catalog.image_types.get("base64")
            else:
                ext = urlsplit(src).path.rsplit(".", 1)[-1] if "." in src else ""
                slug = catalog.image_types.get(ext)
            if slug:
                yield _Use(slug, element.line)
        style = attrs.get("style")
        if style:
            for prop, value in declarations(style):
                for found in _declaration_slugs(catalog, prop, value):
                    yield _Use(found, element.line)


def _css_uses(doc: Document, catalog: Catalog, clients: Sequence[str]) -> Iterator[_Use]:
    """Rules in <style> apply only in clients that keep <style>; rules in @media blocks only
    in clients that understand that media query (for the others it is progressive
    enhancement and they ignore the whole block)."""
    keeps_style = frozenset(c for c in clients if catalog.support("html-style", c) != "n")
    for css, start_line in doc.styles:
        for media, selector, body, offset in css_rules(css):
            line = start_line + css.count("\n", 0, offset)
            applies = keeps_style
            if media is not None:
                media_slugs = ["css-at-media"] + [
                    catalog.media_features[name]
                    for name in re.findall(r"\(\s*([a-z-]+)", media.lower())
                    if name in catalog.media_features
                ]
                applies = frozenset(
                    c
                    for c in keeps_style
                    if all(catalog.support(s, c) in ("y", "a") for s in media_slugs)
                )
            if selector.startswith("@"):
                at_rule = selector.split()[0].lower()
                if at_rule in catalog.at_rules:
                    yield _Use(catalog.at_rules[at_rule], line, keeps_style)
                continue
            for slug in _selector_slugs(catalog, selector):
                yield _Use(slug, line, applies)
            for prop, value in declarations(body):
                for slug in _declaration_slugs(catalog, prop, value):
                    yield _Use(slug, line, applies)


_UNIT = re.compile(r"(?<![\w#.-])-?(?:\d*\.)?\d+(%|[a-z]+)(?![\w-])", re.IGNORECASE)
_CALL = re.compile(r"([a-z][a-z0-9-]*)\(", re.IGNORECASE)


def _declaration_slugs(catalog: Catalog, prop: str, value: str) -> list[str]:
    if prop.startswith("mso-"):
        return []
    slugs = []
    lowered = value.lower()
    if "!important" in lowered:
        slugs.append("css-important")
        lowered = lowered.replace("!important", "").strip()
    if prop.startswith("--"):
        slugs.append(catalog.properties.get("--", "css-variables"))
    first = lowered.split()[0] if lowered else ""
    specific = catalog.property_values.get((prop, first)) or catalog.property_values.get(
        (prop, first.removeprefix("inline-"))
    )
    if specific:
        slugs.append(specific)
    elif prop in catalog.properties:
        slugs.append(catalog.properties[prop])
    for name in _CALL.findall(lowered):
        if name in catalog.functions:
            slugs.append(catalog.functions[name])
    for unit in _UNIT.findall(lowered):
        if unit in catalog.units:
            slugs.append(catalog.units[unit])
    for word in re.findall(r"[a-z][a-z-]*", lowered):
        if word in catalog.value_keywords:
            slugs.append(catalog.value_keywords[word])
    return list(dict.fromkeys(slugs))


_SELECTOR_PARTS = (
    ("css-selector-grouping", re.compile(r",")),
    ("css-selector-child", re.compile(r">")),
    ("css-selector-adjacent-sibling", re.compile(r"\+")),
    ("css-selector-general-sibling", re.compile(r"~(?!=)")),
    ("css-selector-attribute", re.compile(r"\[")),
    ("css-selector-universal", re.compile(r"\*")),
    ("css-selector-id", re.compile(r"#[\w-]")),
    ("css-selector-class", re.compile(r"\.[\w-]")),
    ("css-selector-type", re.compile(r"(?:^|[\s,>+~(])[a-z][a-z0-9]*", re.IGNORECASE)),
    ("css-selector-descendant", re.compile(r"[\w\])*]\s+[\w.#\[*:]")),
    ("css-selector-chaining", re.compile(r"[\w\]][.#\[][\w-]")),
)


def _selector_slugs(catalog: Catalog, selector: str) -> list[str]:
    slugs = [slug for slug, pattern in _SELECTOR_PARTS if pattern.search(selector)]
    for pseudo in re.findall(r"::?[a-z-]+", selector.lower()):
        if pseudo in catalog.pseudos:
            slugs.append(catalog.pseudos[pseudo])
    return slugs
