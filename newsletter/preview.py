"""Write the finished email of an article (or of a stored issue) for a sample subscriber, so
an editor can open exactly what subscribers will get before anything is sent."""

from __future__ import annotations

from pathlib import Path

from newsletter.articles import read_article
from newsletter.config import Settings
from newsletter.delivery import rendered_from_row
from newsletter.render import RenderedIssue, personalize, render_fitting, unsubscribe_url
from newsletter.store import Store

SAMPLE_NAME = "Sam Sample"
SAMPLE_TOKEN = "preview.sample-token"


def rendered_for(settings: Settings, store: Store | None, source: tuple[str, ...]) -> RenderedIssue:
    """Article files are rendered as one issue; a lone number with a store is a stored issue."""
    if store is not None:
        return rendered_from_row(store.get_issue(int(source[0])), settings)
    return render_fitting([read_article(Path(s)) for s in source], settings, slug="preview")


def write_preview(
    settings: Settings, store: Store | None, source: tuple[str, ...], out: Path
) -> list[Path]:
    rendered = rendered_for(settings, store, source)
    body = personalize(rendered, SAMPLE_NAME, unsubscribe_url(settings, SAMPLE_TOKEN))
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    html_path, text_path = out / "email.html", out / "email.txt"
    html_path.write_text(body.html, encoding="utf-8")
    text_path.write_text(body.text, encoding="utf-8")
    return [html_path, text_path]
