"""The queue page and the preview of a queued article. Every rule is the library's: the
order and expected dates (`publish.queue_view`), the article parser and its line-numbered
errors (`publish.queue_add`), the next issue's layout (`publish.choose_next_layout`, read
by the tick and `run`), the check (`check.check_issue`), the proof
(`proofs.send_proof`)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from starlette.responses import HTMLResponse, Response

from newsletter import publish
from newsletter.articles import ARTICLE_SUFFIXES, read_article
from newsletter.check import ERROR, Finding, check_issue
from newsletter.exceptions import ArticleError, NewsletterError
from newsletter.layouts import choose_layout
from newsletter.links import unsubscribe_url
from newsletter.preview import SAMPLE_NAME, SAMPLE_TOKEN
from newsletter.proofs import send_proof
from newsletter.providers import make_provider
from newsletter.records import RenderedIssue
from newsletter.render import personalize
from newsletter.web.admin.base import Ctx

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_PREVIEW_PATH = re.compile(r"/admin/queue/\d+/preview")
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
# Not-before times an editor may type: far enough from year 1 and 9999 that no time zone
# takes them out of what a datetime (and the database) can hold.
YEARS = range(1970, 9000)


def _bounded(value: str | None) -> str | None:
    """The form's not-before value, refused (400) when its year is out of YEARS; the library
    parses and reports everything else."""
    if not value:
        return None
    try:
        year = datetime.strptime(value.strip(), DATETIME_LOCAL).year
    except ValueError:
        return value  # not a date: publish says so, naming the value
    if year not in YEARS:
        raise NewsletterError(
            f"{value!r}: the year must be between {YEARS.start} and {YEARS.stop - 1}"
        )
    return value


def _article_id(ctx: Ctx) -> int:
    return int(ctx.request.path_params["article_id"])


def queue_page(
    ctx: Ctx, errors: list[str] | None = None, status_code: int = 200, layout_error: str = ""
) -> Response:
    view = publish.queue_view(ctx.store, ctx.settings)
    ids = {row.filename: row.id for row in ctx.store.articles.queued()}
    return ctx.page(
        "admin/queue.html",
        status_code,
        view=view,
        ids=ids,
        next_issue=publish.next_issue(ctx.store, ctx.settings, view),
        layout_setting=ctx.settings.layout,
        back="/admin/queue",
        layout_error=layout_error,
        missed=publish.missed_tick(ctx.store),
        dt_format=DATETIME_LOCAL,
        pasted=ctx.form.get("markdown", ""),
        filename=ctx.form.get("filename", ""),
        errors=errors or [],
    )


def _upload_name(raw: str) -> str:
    name = _SAFE_NAME.sub("-", Path(raw.replace("\\", "/")).name).strip(".-")
    return name[:120]


def add_article(ctx: Ctx) -> Response:
    """A file upload, or Markdown pasted with its front matter; the same checks as
    `newsletter queue add`, errors shown with the file's line numbers."""
    upload = ctx.files.get("file")
    pasted = ctx.form.get("markdown", "")
    content = upload[1].read_bytes() if upload else b""
    if upload and content:
        name = _upload_name(upload[0])
    elif pasted.strip():
        name = _upload_name(ctx.form.get("filename", "")) or "pasted-article.md"
        if not name.lower().endswith((".md", ".markdown")):
            name += ".md"
        content = pasted.replace("\r\n", "\n").encode("utf-8")
    else:
        return _queue_with_errors(ctx, ["Choose a file or paste an article."])
    if not name.lower().endswith(ARTICLE_SUFFIXES):
        return _queue_with_errors(
            ctx, [f"{name}: articles are {', '.join(ARTICLE_SUFFIXES)} files"]
        )
    with tempfile.TemporaryDirectory(prefix="newsletter-upload-") as folder:
        source = Path(folder) / name
        source.write_bytes(content)
        try:
            article, target = publish.queue_add(
                ctx.store,
                ctx.settings,
                source,
                _bounded(ctx.form.get("not_before")),
                ctx.zone.key,
                queued_by=ctx.editor.id,
            )
        except ArticleError as exc:
            where = f"{name}:{exc.line}" if exc.line else name
            return _queue_with_errors(ctx, [f"{where}: {exc.message}"], status_code=400)
        except NewsletterError as exc:
            message = str(exc).replace(str(source), name)
            return _queue_with_errors(ctx, [message], status_code=400)
    return ctx.redirect("/admin/queue", f"Queued {target.name}: {article.title}")


def _queue_with_errors(ctx: Ctx, errors: list[str], status_code: int = 400) -> Response:
    return queue_page(ctx, errors, status_code)


def next_layout(ctx: Ctx) -> Response:
    """Choose the next issue's layout (automatic, full or digest): the scheduler's tick and
    `run` build that issue in it (an explicit `run --layout` still wins) and use it up."""
    try:
        chosen = publish.choose_next_layout(ctx.store, ctx.form.get("layout"))
    except NewsletterError as exc:
        return queue_page(ctx, status_code=400, layout_error=str(exc))
    back = ctx.form.get("back", "")
    target = back if _PREVIEW_PATH.fullmatch(back) else "/admin/queue"
    if chosen is None:
        return ctx.redirect(target, "The next issue's layout is automatic.")
    return ctx.redirect(target, f"The next issue goes out as {chosen}.")


def move_article(ctx: Ctx) -> Response:
    row = ctx.store.articles.queued_article(_article_id(ctx))
    up = ctx.form.get("direction") == "up"
    moved = publish.move_article(ctx.store, row.filename, up=up)
    where = "up" if up else "down"
    message = f"Moved {row.filename} {where}." if moved else f"{row.filename} stays."
    return ctx.redirect("/admin/queue", message)


def not_before(ctx: Ctx) -> Response:
    row = ctx.store.articles.queued_article(_article_id(ctx))
    value = "" if "clear" in ctx.form else ctx.form.get("not_before", "")
    try:
        value = _bounded(value) or ""
        when = publish.set_not_before(ctx.store, ctx.settings, row.filename, value, ctx.zone)
    except NewsletterError as exc:
        return _queue_with_errors(ctx, [f"{row.filename}: {exc}"])
    if when is None:
        return ctx.redirect("/admin/queue", f"{row.filename} can go out at the next tick.")
    return ctx.redirect("/admin/queue", f"{row.filename}: not before {ctx.local(when)}.")


def remove_article(ctx: Ctx) -> Response:
    row = ctx.store.articles.queued_article(_article_id(ctx))
    publish.remove_article(ctx.store, row.filename)
    return ctx.redirect("/admin/queue", f"Removed {row.filename} from the queue.")


# -- preview -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preview:
    rendered: RenderedIssue
    html: str
    text: str
    findings: list[Finding]


def _layout_for(ctx: Ctx, filename: str) -> tuple[str | None, publish.NextIssue]:
    """The next issue's layout (the editors' choice, or automatic for its articles) when
    this article goes out in it; None (automatic, as an issue of its own) otherwise."""
    upcoming = publish.next_issue(ctx.store, ctx.settings)
    return (upcoming.layout if filename in upcoming.filenames else None), upcoming


def _preview(ctx: Ctx, filename: str, layout: str | None = None) -> Preview:
    """Render and check the article as its own issue, in `layout` (None: automatic); kept
    while the file and the layout are unchanged."""
    path = ctx.settings.issues_dir / filename
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, id(ctx.settings), layout)
    cached = ctx.admin.previews.get(key)
    if cached is not None:
        return cached
    settings = ctx.settings
    article = read_article(path, headings=settings.contract.headings)
    # What `newsletter check FILE` reports: the email, the article contract and leaks.
    checked = check_issue([article], settings, slug="preview", layout=layout)
    rendered = checked.rendered
    body = personalize(rendered, SAMPLE_NAME, unsubscribe_url(settings, SAMPLE_TOKEN))
    findings = sorted(checked.findings, key=lambda f: f.severity != ERROR)
    preview = Preview(rendered, body.html, body.text, findings)
    if len(ctx.admin.previews) > 64:
        ctx.admin.previews.clear()
    ctx.admin.previews[key] = preview
    return preview


def preview_page(ctx: Ctx) -> Response:
    row = ctx.store.articles.queued_article(_article_id(ctx))
    layout, upcoming = _layout_for(ctx, row.filename)
    try:
        preview = _preview(ctx, row.filename, layout)
    except (ArticleError, OSError) as exc:
        return ctx.page("admin/preview.html", 200, row=row, preview=None, error=str(exc))
    return ctx.page(
        "admin/preview.html",
        row=row,
        preview=preview,
        error="",
        errors=sum(f.severity == ERROR for f in preview.findings),
        layout=choose_layout(ctx.settings.layout, 1, layout),
        in_next=row.filename in upcoming.filenames,
        next_issue=upcoming,
        layout_setting=ctx.settings.layout,
        back=f"/admin/queue/{row.id}/preview",
        layout_error="",
    )


# The email's own document: no scripts at all, images from anywhere (as in an inbox), and
# only our own pages may frame it.
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
_DARK_MEDIA = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)


def email_document(ctx: Ctx) -> Response:
    """The finished HTML for the preview's frames; `?view=dark` applies the email's dark-mode
    rules whatever the editor's own setting (as a dark-mode mail app would)."""
    row = ctx.store.articles.queued_article(_article_id(ctx))
    html = _preview(ctx, row.filename, _layout_for(ctx, row.filename)[0]).html
    if ctx.request.query_params.get("view") == "dark":
        html = _DARK_MEDIA.sub("@media all", html)
    return HTMLResponse(
        html,
        headers={
            "Cache-Control": "no-store",
            "content-security-policy": EMAIL_CSP,
            "x-frame-options": "SAMEORIGIN",
        },
    )


def send_test(ctx: Ctx) -> Response:
    row = ctx.store.articles.queued_article(_article_id(ctx))
    wait = ctx.admin.proofs.hit(ctx.editor.id)
    if wait:
        minutes = -(-wait // 60)
        response = ctx.page(
            "admin/problem.html",
            429,
            heading="Too many test sends",
            message=f"You can send {ctx.admin.proofs.text.replace(';', ' and ')} test emails. "
            f"Try again in {minutes} minute(s).",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    preview = _preview(ctx, row.filename, _layout_for(ctx, row.filename)[0])
    provider = make_provider(ctx.settings)
    send_proof(ctx.settings, provider, preview.rendered, ctx.editor.email)
    return ctx.redirect(
        f"/admin/queue/{row.id}/preview",
        f"Sent a test of {row.filename} to {ctx.editor.email} through {provider.name}.",
    )
