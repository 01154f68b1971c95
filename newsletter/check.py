"""Lint a finished email before it goes out: what would make it clipped, broken, unreadable
or non-compliant in the inboxes that matter.

Errors are things to fix before sending (Gmail would clip it, no unsubscribe link, broken
links, leftover placeholders); warnings are worth a look (a long subject, CSS or HTML that
some major clients drop). Client support comes from the caniemail data (the npm package
`caniemail`, installed with `npm ci` at the project root); findings about it are grouped by
feature, so an editor reads one line per feature, not one per element.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from newsletter.render import GMAIL_CLIP_BYTES, RenderedIssue, personalize

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.store import Store

ERROR = "error"
WARNING = "warning"

# Phones show about this many characters of a subject line in the inbox list.
SUBJECT_MAX_CHARS = 60
# Above this share of Gmail's limit, say the issue is close to being clipped.
NEAR_CLIP_RATIO = 0.9

# The clients whose support decides a warning: Gmail (web and apps), Apple Mail, Outlook
# (Windows, macOS, web), Yahoo (web and apps) and Samsung Email. Keys are caniemail's
# "family.platform" names.
MAJOR_CLIENTS: tuple[str, ...] = (
    "gmail.desktop-webmail",
    "gmail.ios",
    "gmail.android",
    "apple-mail.macos",
    "apple-mail.ios",
    "outlook.windows",
    "outlook.macos",
    "outlook.outlook-com",
    "yahoo.desktop-webmail",
    "yahoo.ios",
    "yahoo.android",
    "samsung-email.android",
)

# Features the built-in templates use knowingly although a major client ignores them, and
# why that is harmless. They are not reported; pass `accept=()` to see them anyway.
ACCEPTED_FALLBACKS: Mapping[str, str] = {
    "html-doctype": "clients that drop the doctype render the same tables",
    "html-meta-color-scheme": "a hint only; clients without it apply their own dark mode",
    "css-border-radius": "Outlook for Windows shows square corners",
    "html-body": "clients that drop <body> styles still get the page table's background",
    "html-aria-hidden": "Yahoo strips it; the preheader it marks is hidden by CSS anyway",
}

# Where the npm package keeps its data (1.x ships both copies).
CANIEMAIL_JSONS = (
    Path("node_modules/caniemail/data/caniemail.json"),
    Path("node_modules/caniemail/dist/data/caniemail.json"),
)
CANIEMAIL_ENV = "NEWSLETTER_CANIEMAIL_JSON"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
NPM_HINT = "npm ci (or: npm install caniemail@1)"

ALLOWED_SCHEMES = ("http", "https", "mailto", "tel")
_PLACEHOLDERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("TK", re.compile(r"\bTK(?:TK)*\b")),
    ("{{", re.compile(r"\{\{")),
    ("{%", re.compile(r"\{%")),
    ("lorem ipsum", re.compile(r"\blorem\b", re.IGNORECASE)),
    ("unfilled placeholder", re.compile(r"\bnl_[0-9a-f]{8,}_[a-z_]+")),
)


@dataclass(frozen=True)
class Finding:
    """One problem: `where` is e.g. "html:42", "text:7", "subject" or "" for the whole email."""

    severity: str
    code: str
    message: str
    where: str = ""


def has_errors(findings: Iterable[Finding]) -> bool:
    """True when anything must be fixed before sending."""
    return any(f.severity == ERROR for f in findings)


def format_findings(findings: Sequence[Finding]) -> str:
    """One `severity where: message` line per finding, errors first, then a count."""
    ordered = sorted(findings, key=lambda f: f.severity != ERROR)
    lines = [
        f"{f.severity} {f.where}: {f.message}" if f.where else f"{f.severity}: {f.message}"
        for f in ordered
    ]
    errors = sum(f.severity == ERROR for f in findings)
    warnings = len(findings) - errors
    lines.append(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    return "\n".join(lines)


def check_rendered(
    rendered: RenderedIssue,
    *,
    name: str | None = None,
    unsubscribe: str | None = None,
    collapse_is_error: bool = False,
) -> list[Finding]:
    """Check a rendered issue as one sample subscriber would get it. `collapse_is_error` is
    the editor's setting to refuse an issue whose later articles had to be shortened."""
    from newsletter.preview import SAMPLE_NAME, SAMPLE_TOKEN

    if unsubscribe is None:
        base = rendered.view_url.rsplit("/archive/", 1)[0]
        unsubscribe = f"{base}/unsubscribe/{SAMPLE_TOKEN}"
    body = personalize(rendered, name or SAMPLE_NAME, unsubscribe)
    findings = check_email(body.html, body.text, rendered.subject, rendered.preheader)
    # render_fitting's collapsed articles link to their place in the web edition.
    collapsed = _unique(re.findall(re.escape(rendered.view_url) + r"#article-(\d+)", body.html))
    if collapsed:
        findings.append(
            Finding(
                ERROR if collapse_is_error else WARNING,
                "collapsed",
                f"{len(collapsed)} article(s) (no. {', '.join(collapsed)}) shortened to title, "
                "teaser and a link so the email stays under Gmail's clipping limit",
                "html",
            )
        )
    return findings


def check_source(settings: Settings, store: Store | None, source: tuple[str, ...]) -> list[Finding]:
    """Check what `newsletter preview SOURCE` would show: article files or a stored issue."""
    from newsletter.preview import rendered_for

    findings = check_rendered(
        rendered_for(settings, store, source), collapse_is_error=settings.collapse_is_error
    )
    if not settings.postal_address.strip():
        findings.append(
            Finding(
                WARNING,
                "no-postal-address",
                "no postal_address in newsletter.toml: CAN-SPAM wants the sender's physical "
                "address in every email",
                "settings",
            )
        )
    return findings


def check_email(
    html: str,
    text: str | None,
    subject: str,
    preheader: str | None,
    *,
    accept: Iterable[str] = ACCEPTED_FALLBACKS,
    clients: Sequence[str] = MAJOR_CLIENTS,
) -> list[Finding]:
    """Lint one finished email (placeholders already filled in)."""
    doc = _Document.parse(html)
    findings: list[Finding] = []
    findings += _check_size(html)
    findings += _check_parts(doc, text, subject, preheader)
    findings += _check_links(doc)
    findings += _check_images(doc)
    findings += _check_accessibility(doc)
    findings += _check_placeholders(doc, text, subject, preheader)
    findings += _check_client_support(doc, set(accept), clients)
    return findings


# -- the plain checks ------------------------------------------------------------------------
def _check_size(html: str) -> list[Finding]:
    size = len(html.encode("utf-8"))
    limit_kb = GMAIL_CLIP_BYTES // 1024
    if size > GMAIL_CLIP_BYTES:
        return [
            Finding(
                ERROR,
                "gmail-clip",
                f"the HTML is {size / 1024:.1f} KB ({size:,} bytes): Gmail clips messages over "
                f"{limit_kb} KB and hides the rest, unsubscribe link included; shorten it or "
                "send fewer articles",
                "html",
            )
        ]
    if size > GMAIL_CLIP_BYTES * NEAR_CLIP_RATIO:
        return [
            Finding(
                WARNING,
                "gmail-clip-near",
                f"the HTML is {size / 1024:.1f} KB, close to the {limit_kb} KB at which Gmail "
                "clips messages",
                "html",
            )
        ]
    return []


def _check_parts(
    doc: _Document, text: str | None, subject: str, preheader: str | None
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
    elif _squash(preheader)[:60] not in _squash(doc.all_text()):
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
        and _link_problem(link.href) is None
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


def _squash(value: str) -> str:
    return " ".join(value.split())


def _link_problem(href: str) -> tuple[str, str] | None:
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


def _is_local_host(host: str) -> bool:
    host = host.lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def _check_links(doc: _Document) -> list[Finding]:
    grouped: dict[str, list[tuple[str, int, str]]] = {}
    local: list[tuple[str, int]] = []
    for link in doc.links:
        problem = _link_problem(link.href)
        if problem:
            code, why = problem
            grouped.setdefault(code, []).append((link.href, link.line, why))
            continue
        host = urlsplit(link.href.strip()).hostname
        if host and _is_local_host(host):
            local.append((link.href, link.line))
    findings = []
    for code, items in grouped.items():
        examples = ", ".join(repr(href) for href in _unique(h for h, _, _ in items)[:3])
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
        hosts = ", ".join(_unique(urlsplit(h.strip()).hostname or "" for h, _ in local)[:3])
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


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _check_images(doc: _Document) -> list[Finding]:
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


def _check_accessibility(doc: _Document) -> list[Finding]:
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


def _check_placeholders(
    doc: _Document, text: str | None, subject: str, preheader: str | None
) -> list[Finding]:
    sources: list[tuple[str, list[tuple[str, int | None]]]] = [
        ("subject", [(subject or "", None)]),
        ("preheader", [(preheader or "", None)]),
        ("html", doc.texts),
        ("text", [(line, n) for n, line in enumerate((text or "").splitlines(), start=1)]),
    ]
    findings = []
    for label, pattern in _PLACEHOLDERS:
        for part, chunks in sources:
            hits = [(m, chunk, line) for chunk, line in chunks for m in pattern.finditer(chunk)]
            if not hits:
                continue
            match, chunk, line = hits[0]
            where = f"{part}:{line}" if line is not None else part
            times = f" ({len(hits)} times)" if len(hits) > 1 else ""
            context = _squash(chunk[max(0, match.start() - 30) : match.end() + 30])
            findings.append(
                Finding(
                    ERROR,
                    "placeholder",
                    f"leftover placeholder {label!r}{times}: ...{context}...",
                    where,
                )
            )
    return findings


# -- reading the HTML ------------------------------------------------------------------------
@dataclass
class _Element:
    tag: str
    attrs: dict[str, str | None]
    line: int


@dataclass
class _Link:
    href: str
    line: int
    text: str = ""


@dataclass
class _Document:
    """What the checks need from the HTML, with line numbers."""

    elements: list[_Element] = field(default_factory=list)
    links: list[_Link] = field(default_factory=list)
    styles: list[tuple[str, int]] = field(default_factory=list)
    # Visible text and attribute values, each with its line.
    texts: list[tuple[str, int]] = field(default_factory=list)
    doctype: int | None = None
    comments: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, html: str) -> _Document:
        parser = _Parser()
        parser.feed(html)
        parser.close()
        return parser.doc

    def all_text(self) -> str:
        return " ".join(chunk for chunk, _ in self.texts)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.doc = _Document()
        self._open_links: list[_Link] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line = self.getpos()[0]
        values = {k.lower(): v for k, v in attrs}
        self.doc.elements.append(_Element(tag, values, line))
        for key, value in values.items():
            if value and key not in ("style",):
                self.doc.texts.append((value, line))
        if tag == "a" and values.get("href") is not None:
            link = _Link(values["href"] or "", line)
            self.doc.links.append(link)
            self._open_links.append(link)
        elif tag == "style":
            self._in_style = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "style":
            self._in_style = False

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open_links:
            self._open_links.pop()
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        line = self.getpos()[0]
        if self._in_style:
            self.doc.styles.append((data, line))
            return
        if data.strip():
            self.doc.texts.append((data, line))
        for link in self._open_links:
            link.text += data

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            self.doc.doctype = self.getpos()[0]

    def handle_comment(self, data: str) -> None:
        self.doc.comments.append(self.getpos()[0])


# -- client support (caniemail) --------------------------------------------------------------
@dataclass
class Catalog:
    """The caniemail data, indexed by what can be found in an email."""

    features: dict[str, dict]
    family_names: dict[str, str]
    platform_names: dict[str, str]
    properties: dict[str, str] = field(default_factory=dict)
    property_values: dict[tuple[str, str], str] = field(default_factory=dict)
    value_keywords: dict[str, str] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    at_rules: dict[str, str] = field(default_factory=dict)
    media_features: dict[str, str] = field(default_factory=dict)
    pseudos: dict[str, str] = field(default_factory=dict)
    elements: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    image_types: dict[str, str] = field(default_factory=dict)

    def support(self, slug: str, client: str) -> str | None:
        """'y', 'a' (partial), 'n' or 'u' in the client's latest tested version."""
        family, platform = client.split(".", 1)
        stats = self.features.get(slug, {}).get("stats", {}).get(family, {}).get(platform)
        if not stats:
            return None
        latest = stats[sorted(stats)[-1]]  # version keys sort as the npm package sorts them
        return (latest or "u").strip()[:1] or "u"


def find_caniemail_json() -> Path | None:
    """The caniemail JSON: $NEWSLETTER_CANIEMAIL_JSON, else node_modules here or above, else
    in the project this package was installed from."""
    override = os.environ.get(CANIEMAIL_ENV)
    if override:
        path = Path(override)
        return path if path.is_file() else None
    here = Path.cwd().resolve()
    for folder in (here, *here.parents, PROJECT_ROOT):
        for relative in CANIEMAIL_JSONS:
            candidate = folder / relative
            if candidate.is_file():
                return candidate
    return None


@functools.lru_cache(maxsize=4)
def load_catalog(path: Path) -> Catalog:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return _build_catalog(data)


_TAG = re.compile(r"<([a-z][a-z0-9]*)(?:\s+type=\"([a-z]+)\")?>")
_FUNCTION = re.compile(r"([a-z][a-z0-9-]*)\(\)")
_PROP_VALUE = re.compile(r"^([a-z-]+)\s*:\s*([a-z-]+)$")
_WORD = re.compile(r"^-?[a-z][a-z-]*$")
_PROPERTY_SUFFIX = re.compile(r"\s+(?:css\s+)?(?:propert(?:y|ies)|shorthand)$")


def _split_list(value: str | None) -> list[str]:
    return [part.strip() for part in re.split(r",|&|\band\b", value or "") if part.strip()]


def _build_catalog(data: dict) -> Catalog:
    """Index each feature by the property, value, selector, element or attribute that shows
    it is used. Derived from the feature titles, so new data needs no code change."""
    nice = data.get("nicenames", {})
    catalog = Catalog(
        features={f["slug"]: f for f in data["data"]},
        family_names=nice.get("family", {}),
        platform_names=nice.get("platform", {}),
    )
    keyword_props: dict[str, str] = {}
    for feature in data["data"]:
        slug, title = feature["slug"], feature["title"].strip()
        lower = title.lower()
        if feature["category"] == "css":
            _index_css(catalog, keyword_props, slug, lower, feature.get("keywords"))
        elif feature["category"] == "html":
            _index_html(catalog, slug, lower, feature.get("keywords"))
        elif feature["category"] == "image" and slug.startswith("image-"):
            kind = slug.removeprefix("image-")
            catalog.image_types[kind] = slug
    for prop, slug in keyword_props.items():
        catalog.properties.setdefault(prop, slug)
    # Common spellings of the image types.
    for alias, kind in (("jpeg", "jpg"), ("tif", "tiff"), ("heic", "heif")):
        if kind in catalog.image_types:
            catalog.image_types.setdefault(alias, catalog.image_types[kind])
    return catalog


def _index_css(
    catalog: Catalog, keyword_props: dict[str, str], slug: str, title: str, keywords: str | None
) -> None:
    stem = slug.removeprefix("css-")
    if slug.startswith("css-selector-") or slug in ("css-comments", "css-important", "css-nesting"):
        return  # selectors are matched by _SELECTOR_PARTS; the others by hand below
    if slug.startswith("css-unit-"):
        unit = stem.removeprefix("unit-")
        if unit == "percent":
            catalog.units["%"] = slug
        elif unit == "initial":
            catalog.value_keywords["initial"] = slug
        elif unit == "calc":
            catalog.functions["calc"] = slug
        else:
            catalog.units[unit] = slug
        return
    if slug.startswith("css-pseudo-"):
        name = title.split("(")[0].strip()
        catalog.pseudos[name if name.startswith(":") else f":{name}"] = slug
        return
    if title.startswith("@"):
        for part in title.split(","):
            part = part.strip()
            media = re.search(r"\(\s*([a-z-]+)", part)
            if part.startswith("@media") and media:
                catalog.media_features[media.group(1)] = slug
            else:
                catalog.at_rules[part.split()[0]] = slug
        return
    if slug == "css-variables":
        catalog.properties["--"] = slug
        catalog.functions["var"] = slug
        return
    if "()" in title:
        for name in _FUNCTION.findall(title):
            catalog.functions[name] = slug
        return
    match = _PROP_VALUE.match(title)
    if match:
        catalog.property_values[(match.group(1), match.group(2))] = slug
        return
    words = [_PROPERTY_SUFFIX.sub("", w).strip() for w in _split_list(title)]
    if words and all(_WORD.match(w) for w in words):
        if words[0].split("-")[0] == stem.split("-")[0]:
            for word in words:
                catalog.properties.setdefault(word, slug)
        else:
            # "system-ui, ui-serif, ..." or "fit-content, min-content, ...": values, not properties.
            for word in words:
                catalog.value_keywords.setdefault(word, slug)
            return
    # Keywords name the longhands of a shorthand ("border" lists border-top-width, ...).
    family = stem.split("-")[0]
    for keyword in _split_list(keywords):
        if _WORD.match(keyword) and "-" in keyword and keyword.startswith(family + "-"):
            keyword_props.setdefault(keyword, slug)


def _index_html(catalog: Catalog, slug: str, title: str, keywords: str | None) -> None:
    if slug in ("html-doctype", "html-comments", "html-anchor-links", "html-mailto-links"):
        return
    if slug == "html-meta-color-scheme":
        return
    tags = _TAG.findall(title)
    if tags:
        for tag, kind in tags:
            catalog.elements[f"{tag}[{kind}]" if kind else tag] = slug
        if " to " in title and len(tags) == 2 and tags[0][0][:-1] == tags[1][0][:-1]:
            prefix = tags[0][0][:-1]
            for n in range(int(tags[0][0][-1]), int(tags[1][0][-1]) + 1):
                catalog.elements[f"{prefix}{n}"] = slug
        if slug == "html-lists":
            for word in _split_list(keywords):
                catalog.elements.setdefault(word, slug)
        return
    if title.endswith(("attribute", "attributes")):
        for word in _split_list(title.rsplit(" ", 1)[0]):
            catalog.attributes[word] = slug
        return
    if slug == "html-image-maps":
        for keyword in _split_list(keywords):
            name, _, kind = keyword.partition(" ")
            if kind == "element":
                catalog.elements[name] = slug
            elif kind == "attribute":
                catalog.attributes[name] = slug
        return
    if slug == "html-semantics":
        for word in _split_list(keywords):
            catalog.elements[word] = slug
        return
    if _WORD.match(title):
        catalog.elements[title] = slug


@dataclass(frozen=True)
class _Use:
    slug: str
    line: int
    # None: every client reads it (inline styles, elements); else the clients that apply it.
    clients: frozenset[str] | None = None


def _check_client_support(
    doc: _Document, accept: set[str], clients: Sequence[str]
) -> list[Finding]:
    path = find_caniemail_json()
    if path is None:
        return [
            Finding(
                WARNING,
                "caniemail-missing",
                "email-client support data (the npm package caniemail) not found, so CSS and "
                f"HTML were not checked against email clients: run `{NPM_HINT}` in {PROJECT_ROOT}",
            )
        ]
    try:
        catalog = load_catalog(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [
            Finding(
                WARNING,
                "caniemail-missing",
                f"cannot read the email-client support data {path} ({exc}): run `{NPM_HINT}` "
                f"in {PROJECT_ROOT}",
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


def _html_uses(doc: _Document, catalog: Catalog) -> Iterator[_Use]:
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
            for prop, value in _declarations(style):
                for found in _declaration_slugs(catalog, prop, value):
                    yield _Use(found, element.line)


def _css_uses(doc: _Document, catalog: Catalog, clients: Sequence[str]) -> Iterator[_Use]:
    """Rules in <style> apply only in clients that keep <style>; rules in @media blocks only
    in clients that understand that media query (for the others it is progressive
    enhancement and they ignore the whole block)."""
    keeps_style = frozenset(c for c in clients if catalog.support("html-style", c) != "n")
    for css, start_line in doc.styles:
        for media, selector, body, offset in _css_rules(css):
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
            for prop, value in _declarations(body):
                for slug in _declaration_slugs(catalog, prop, value):
                    yield _Use(slug, line, applies)


def _strip_comments(css: str) -> str:
    """Blank out /* comments */, keeping offsets (and so line numbers) as they were."""
    return re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), css, flags=re.S)


def _matching_brace(css: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(css)):
        if css[i] == "{":
            depth += 1
        elif css[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(css)


def _css_rules(
    css: str, start: int = 0, end: int | None = None, media: str | None = None
) -> Iterator[tuple[str | None, str, str, int]]:
    """(media query or None, selector or at-rule prelude, declarations, offset) per rule."""
    css = _strip_comments(css) if start == 0 and end is None else css
    end = len(css) if end is None else end
    i = start
    while i < end:
        brace = css.find("{", i, end)
        semi = css.find(";", i, end)
        if brace == -1 and semi == -1:
            return
        if semi != -1 and (brace == -1 or semi < brace):
            prelude = css[i:semi].strip()
            if prelude.startswith("@"):  # @import, @charset
                yield media, prelude, "", _first_char(css, i)
            i = semi + 1
            continue
        close = _matching_brace(css, brace)
        prelude = css[i:brace].strip()
        offset = _first_char(css, i)
        if prelude.lower().startswith("@media"):
            yield from _css_rules(css, brace + 1, close, prelude[6:].strip())
        elif prelude:
            yield (
                media,
                prelude,
                css[brace + 1 : close] if not prelude.startswith("@") else "",
                offset,
            )
        i = close + 1


def _first_char(css: str, i: int) -> int:
    while i < len(css) and css[i].isspace():
        i += 1
    return i


def _declarations(body: str) -> Iterator[tuple[str, str]]:
    """(property, value) pairs, splitting on semicolons outside quotes and brackets."""
    depth, quote, start = 0, "", 0
    parts = []
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == ";" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    for part in parts:
        prop, sep, value = part.partition(":")
        if sep and prop.strip():
            yield prop.strip().lower(), value.strip()


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
