"""The caniemail data (email-client support per HTML/CSS feature), indexed by what can be
found in an email."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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

# Shipped inside the package (scripts/refresh-caniemail regenerates it from the npm package);
# the runtime never looks in node_modules. The variable points a check at other data.
CANIEMAIL_JSON = Path(__file__).resolve().parent / "data" / "caniemail.json"
CANIEMAIL_ENV = "NEWSLETTER_CANIEMAIL_JSON"


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


def caniemail_json_path() -> Path:
    """Where the data should be: $NEWSLETTER_CANIEMAIL_JSON, else the copy in the package."""
    override = os.environ.get(CANIEMAIL_ENV)
    return Path(override) if override else CANIEMAIL_JSON


def find_caniemail_json() -> Path | None:
    """The caniemail JSON to read, or None when it is not there."""
    path = caniemail_json_path()
    return path if path.is_file() else None


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
