"""Golden files for the finished sample email: a rendering change shows as a readable diff.

After an intended change to the templates or render.py, regenerate and review the diff:

    NEWSLETTER_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_golden.py
    git diff tests/golden/
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from newsletter.articles import read_article
from newsletter.check import check_email, format_findings, has_errors
from newsletter.records import RenderedIssue
from newsletter.render import personalize, render_fitting
from newsletter.settings import settings_from_dict
from tests.conftest import PLAIN_ARTICLES, PlainArticle

GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("NEWSLETTER_REGEN_GOLDEN") == "1"
FIXED_NONCE = "0" * 16

SETTINGS = {
    "newsletter": {
        "name": "Endings Explained",
        "from_email": "editor@endings.example.com",
        "from_name": "Endings Explained",
        "base_url": "https://endings.example.com",
        "postal_address": "Endings Explained, 1 Example Street, 75001 Paris, France",
        "language": "en",
        "timezone": "Europe/Paris",
    }
}
SAMPLE_NAME = "Sam Sample"
SAMPLE_UNSUBSCRIBE = "https://endings.example.com/unsubscribe/sample-token"


# The bundled sample always has golden files; the seed's are compared when ../shared is there.
each_article = pytest.mark.parametrize("known", PLAIN_ARTICLES, ids=lambda a: a.golden)


def _render(tmp_path: Path, known: PlainArticle) -> tuple[RenderedIssue, str, str]:
    settings = settings_from_dict(SETTINGS, tmp_path)
    rendered = render_fitting([read_article(known.path)], settings)
    body = personalize(rendered, SAMPLE_NAME, SAMPLE_UNSUBSCRIBE)
    # The nonce is random per issue; personalize replaced every placeholder, but pin it anyway.
    html = body.html.replace(rendered.placeholder_nonce, FIXED_NONCE)
    text = body.text.replace(rendered.placeholder_nonce, FIXED_NONCE)
    return rendered, html, text


def _compare(actual: str, name: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="\n")
    assert path.exists(), f"{path} is missing: run with NEWSLETTER_REGEN_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"tests/golden/{name} (expected)",
                tofile=f"{name} (rendered now)",
            )
        )
        pytest.fail(
            f"the rendered email differs from tests/golden/{name}; if the change is intended, "
            f"rerun with NEWSLETTER_REGEN_GOLDEN=1 and review `git diff tests/golden`\n{diff}",
            pytrace=False,
        )


@each_article
def test_email_html_matches_golden(tmp_path, known):
    _, html, _ = _render(tmp_path, known)
    _compare(html, f"{known.golden}_email.html")


@each_article
def test_email_text_matches_golden(tmp_path, known):
    _, _, text = _render(tmp_path, known)
    _compare(text, f"{known.golden}_email.txt")


@each_article
def test_rendering_is_deterministic(tmp_path, known):
    assert _render(tmp_path, known)[1:] == _render(tmp_path, known)[1:]


@each_article
def test_golden_email_passes_the_check(tmp_path, known):
    rendered, _, _ = _render(tmp_path, known)
    html = (GOLDEN / f"{known.golden}_email.html").read_text(encoding="utf-8")
    text = (GOLDEN / f"{known.golden}_email.txt").read_text(encoding="utf-8")
    findings = check_email(html, text, rendered.subject, rendered.preheader)
    assert not has_errors(findings), format_findings(findings)
    assert SAMPLE_UNSUBSCRIBE in html and SAMPLE_UNSUBSCRIBE in text
