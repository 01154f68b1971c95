"""Write the finished email of an article (or of a stored issue) for a sample subscriber, so
an editor can open exactly what subscribers will get before anything is sent."""

from __future__ import annotations

from pathlib import Path

from newsletter.articles import read_article
from newsletter.links import stored_issue, unsubscribe_url
from newsletter.records import RenderedIssue
from newsletter.render import personalize, render_fitting
from newsletter.settings import Settings
from newsletter.store import Store

SAMPLE_NAME = "Sam Sample"
SAMPLE_TOKEN = "preview.sample-token"


def names_an_issue(source: tuple[str, ...]) -> bool:
    """Whether `preview`/`check` SOURCE is a stored issue's number rather than article files:
    one number that is no file's name (a file called `3` is still an article)."""
    return len(source) == 1 and source[0].isdigit() and not Path(source[0]).exists()


def rendered_for(
    settings: Settings,
    store: Store | None,
    source: tuple[str, ...],
    layout: str | None = None,
) -> RenderedIssue:
    """Article files are rendered as one issue (in `layout`, default: as `run` would); a lone
    number with a store is a stored issue, as it was rendered."""
    if store is not None:
        return stored_issue(settings, store.issues.get_issue(int(source[0])))
    articles = [read_article(Path(s), headings=settings.contract.headings) for s in source]
    return render_fitting(articles, settings, slug="preview", layout=layout)


def write_preview(
    settings: Settings,
    store: Store | None,
    source: tuple[str, ...],
    out: Path,
    layout: str | None = None,
) -> list[Path]:
    rendered = rendered_for(settings, store, source, layout)
    body = personalize(rendered, SAMPLE_NAME, unsubscribe_url(settings, SAMPLE_TOKEN))
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    html_path, text_path = out / "email.html", out / "email.txt"
    html_path.write_text(body.html, encoding="utf-8")
    text_path.write_text(body.text, encoding="utf-8")
    return [html_path, text_path]
