"""`newsletter.screenshot`: the sample email in headless Chromium, on a desktop, on a phone
and in dark mode. Skipped only where Debian's chromium is not installed.

NEWSLETTER_REGEN_DOCS=1 .venv/bin/pytest tests/test_screenshot.py also rewrites the README's
pictures, docs/sample-{desktop,phone,dark}.png, from these screenshots.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from newsletter.articles import read_article
from newsletter.render import personalize, render_issue
from newsletter.resources import sample_articles
from newsletter.screenshot import (
    CHROMIUM,
    DARK,
    PHONE,
    capture,
    is_blank,
    pixel_spread,
    screenshots,
)
from newsletter.settings import settings_from_dict

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent: apt-get install chromium chromium-driver",
)
REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def write_sample_email(folder: Path) -> Path:
    """The three sample articles as one issue, the lead in full and the others collapsed (so
    the spoiler divider, the buttons and the footer all show): the README's pictures."""
    settings = settings_from_dict(
        {
            "newsletter": {
                "name": "Endings Explained",
                "base_url": "https://endings.example.com",
                "postal_address": "Endings Explained, 1 Example Street, 75001 Paris, France",
            }
        },
        folder,
    )
    articles = [read_article(p) for p in sample_articles()]
    rendered = render_issue(articles, settings, collapse_after=1)
    body = personalize(rendered, "Sam Sample", "https://endings.example.com/unsubscribe/sample")
    path = folder / "sample.html"
    path.write_text(body.html, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shots")
    taken = {shot.view.name: shot for shot in capture(write_sample_email(folder), folder / "png")}
    if os.environ.get("NEWSLETTER_REGEN_DOCS") == "1":
        # The README's pictures: look at them before committing.
        DOCS.mkdir(exist_ok=True)
        for shot in taken.values():
            shutil.copyfile(shot.path, DOCS / shot.path.name)
    return taken


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _mean_grey(path: Path) -> float:
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        return ImageStat.Stat(image.convert("L")).mean[0]


def test_three_pictures_that_are_not_blank(shots):
    assert set(shots) == {"desktop", "phone", "dark"}
    for shot in shots.values():
        assert shot.path.name == f"sample-{shot.view.name}.png"
        assert not is_blank(shot.path), f"{shot.path} looks blank ({pixel_spread(shot.path):.1f})"
        width, height = _png_size(shot.path)
        assert width == shot.view.width and height == shot.height > 600


def test_phone_layout_fits_without_sideways_scrolling(shots):
    phone = shots["phone"]
    assert phone.view.width == 375
    assert phone.scroll_width <= 375 and not phone.scrolls_sideways
    assert not shots["dark"].scrolls_sideways and not shots["desktop"].scrolls_sideways
    # Text reflows instead: the phone picture is taller than the desktop one.
    assert phone.height > shots["desktop"].height


def test_dark_mode_is_dark(shots):
    assert _mean_grey(shots["dark"].path) < 80 < _mean_grey(shots["phone"].path)


def test_a_fixed_wide_layout_is_caught(tmp_path):
    wide = tmp_path / "wide.html"
    wide.write_text(
        '<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width">'
        '</head><body><table width="700"><tr><td>Too wide for a phone</td></tr></table>'
        "</body></html>",
        encoding="utf-8",
    )
    (shot,) = capture(wide, tmp_path, views=(PHONE,))
    assert shot.scrolls_sideways and shot.scroll_width >= 700


def test_screenshots_returns_the_paths(tmp_path):
    html = write_sample_email(tmp_path)
    paths = screenshots(html, tmp_path / "out", prefix="email")
    assert [p.name for p in paths] == ["email-desktop.png", "email-phone.png", "email-dark.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert DARK.dark and not PHONE.dark
