"""Golden files for the digest layout: the bundled sample articles as one digest issue, HTML
and plain text (the sample, not the seed, so a clean clone compares them too). Regenerate after an intended change and review the diff:

    NEWSLETTER_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_golden_digest.py
    git diff tests/golden/
"""

from __future__ import annotations

from pathlib import Path

from newsletter.articles import read_article
from newsletter.check import check_email, format_findings, has_errors
from newsletter.render import RenderedIssue, personalize, render_fitting
from newsletter.resources import sample_articles
from newsletter.settings import settings_from_dict
from tests.test_golden import FIXED_NONCE, SAMPLE_NAME, SAMPLE_UNSUBSCRIBE, SETTINGS, _compare


def _render(tmp_path: Path) -> tuple[RenderedIssue, str, str]:
    settings = settings_from_dict(SETTINGS, tmp_path)
    articles = [read_article(p) for p in sample_articles()]
    rendered = render_fitting(articles, settings, slug="digest")
    body = personalize(rendered, SAMPLE_NAME, SAMPLE_UNSUBSCRIBE)
    html = body.html.replace(rendered.placeholder_nonce, FIXED_NONCE)
    text = body.text.replace(rendered.placeholder_nonce, FIXED_NONCE)
    return rendered, html, text


def test_digest_html_matches_golden(tmp_path):
    _, html, _ = _render(tmp_path)
    assert "Read the ending" in html
    _compare(html, "digest_email.html")


def test_digest_text_matches_golden(tmp_path):
    _, _, text = _render(tmp_path)
    _compare(text, "digest_email.txt")


def test_rendering_is_deterministic(tmp_path):
    assert _render(tmp_path)[1:] == _render(tmp_path)[1:]


def test_golden_digest_passes_the_check(tmp_path):
    rendered, _, _ = _render(tmp_path)
    html = (Path(__file__).parent / "golden" / "digest_email.html").read_text(encoding="utf-8")
    text = (Path(__file__).parent / "golden" / "digest_email.txt").read_text(encoding="utf-8")
    findings = check_email(html, text, rendered.subject, rendered.preheader)
    assert not has_errors(findings), format_findings(findings)
    assert SAMPLE_UNSUBSCRIBE in html and SAMPLE_UNSUBSCRIBE in text
