"""The `newsletter` command: parse arguments, call the library, print. No logic lives here."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli import segments as segments_commands
from newsletter.exceptions import NewsletterError
from newsletter.records import ArticleStatus, DeliveryState, IssueStatus

if TYPE_CHECKING:  # the command table loads nothing heavy: each command imports what it uses
    from newsletter import delivery, publish
    from newsletter.settings import Settings
    from newsletter.store import Store


class LibraryErrors(click.Group):
    """Print a user's mistake as one line and exit 1: never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None


class App:
    """Settings and store, opened on first use so `init` and `--help` need neither."""

    def __init__(self, config: Path | None) -> None:
        self._config = config
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from newsletter.settings import load_settings

            self._settings = load_settings(self._config)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            from newsletter.store import Store

            self._store = Store(self.settings.database_url)
        return self._store


pass_app = click.make_pass_decorator(App)

# The layout of one issue; without it, several articles make a digest and one follows
# [issue] layout in newsletter.toml.
LAYOUT_OPTION = click.option(
    "--layout",
    type=click.Choice(("full", "digest")),  # newsletter.layouts.LAYOUTS, not imported here
    default=None,
    help="full: the article in the email, its ending after a divider; digest: cards linking "
    "to each article's page (default: digest for several articles, else [issue] layout).",
)


def _local(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")


@click.group(cls=LibraryErrors)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    envvar="NEWSLETTER_CONFIG",
    help="Path to newsletter.toml (default: the nearest one).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: int) -> None:
    """Publish article-driven email newsletters."""
    import logging

    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = App(config)


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path), default=".")
@click.option("--sample", is_flag=True, help="Queue the bundled sample articles and subscribers.")
def init(folder: Path, sample: bool) -> None:
    """Create newsletter.toml, issues/, outbox/ and the database in FOLDER."""
    from newsletter import publish
    from newsletter.settings import load_settings, write_default_config
    from newsletter.store import Store

    path = write_default_config(folder)
    settings = load_settings(path)
    store = Store(settings.database_url)
    click.echo(f"created {path}")
    if sample:
        from newsletter.resources import sample_articles, sample_subscribers
        from newsletter.subscribers import import_csv

        for article in sample_articles():
            publish.queue_add(store, settings, article)
            click.echo(f"queued {article.name}")
        result = import_csv(store, sample_subscribers())
        click.echo(f"imported {result.imported} sample subscribers")


# -- queue ----------------------------------------------------------------------------------
@cli.group()
def queue() -> None:
    """The articles waiting to go out, in order."""


@queue.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--not-before", help="Earliest send time, e.g. '2026-12-01 09:00'.")
@click.option("--tz", help="Time zone of --not-before (default: the newsletter's).")
@pass_app
def queue_add(app: App, file: Path, not_before: str | None, tz: str | None) -> None:
    """Copy FILE into issues/ and queue it last. Problems with the article contract are
    listed by file and line; errors among them keep the file out of the queue."""
    from newsletter import publish
    from newsletter.conformance import validate_file

    article, target = publish.queue_add(app.store, app.settings, file, not_before, tz)
    for problem in validate_file(file, app.settings.contract):
        click.echo(str(problem), err=True)
    click.echo(f"queued {target.name}: {article.title}")


@queue.command("list")
@pass_app
def queue_list(app: App) -> None:
    """Show the queue in sending order with the expected send date of each article."""
    from newsletter import publish
    from newsletter.alerts import held_notice

    view = publish.queue_view(app.store, app.settings)
    # The listing and its notes go to one stream, so they never interleave in a shared pipe.
    if not view.entries:
        click.echo("the queue is empty")
    for n, entry in enumerate(view.entries, start=1):
        status = entry.status
        if entry.status == "waiting":
            status = f"not before {_local(entry.not_before, app.settings)}"
        click.echo(f"{n:>3}. {entry.filename}  [{status}]  {entry.title}")
        if entry.status == "held":
            click.echo(f"     {held_notice(entry.filename)}:")
            for line in (entry.error or "").splitlines():
                click.echo(f"       {line}")
            continue
        click.echo(f"     expected: {_local(entry.expected, app.settings)}")
        if entry.error:
            click.echo(f"     error: {entry.error}")
    if view.entries:
        upcoming = publish.next_issue(app.store, app.settings, view)
        how = "chosen with 'queue layout'" if upcoming.chosen else "automatic"
        click.echo(f"next issue: {upcoming.layout} layout ({how})")
    held = publish.held_tick(app.store)
    if held:
        click.echo(
            f"held: the issue due at {_local(held, app.settings)} was missed while the scheduler "
            "was down; run 'newsletter run' to send it now"
        )
    dry = view.dry_notice(lambda tick: _local(tick, app.settings))
    if dry:
        click.echo(f"warning: {dry}")


@queue.command("layout")
@click.argument("layout", type=click.Choice(("automatic", "full", "digest")))
@pass_app
def queue_layout(app: App, layout: str) -> None:
    """Choose the layout of the next issue the scheduler or 'run' makes: full, digest, or
    automatic (a digest for several articles, else [issue] layout). That issue uses the choice
    up; the workspace's queue page sets the same choice."""
    from newsletter import publish

    chosen = publish.choose_next_layout(app.store, layout)
    click.echo(
        f"the next issue goes out as {chosen}" if chosen else "the next issue's layout is automatic"
    )


@queue.command("release")
@click.argument("article")
@pass_app
def queue_release(app: App, article: str) -> None:
    """Put ARTICLE, held because its check failed, back in its place in the queue (once fixed).
    The next tick checks it again."""
    row = app.store.articles.release_article(Path(article).name)
    click.echo(f"released {row.filename}: back in the queue; the next tick checks it again")


@queue.command("move")
@click.argument("article")
@click.option("--up", "direction", flag_value="up", help="One place earlier.")
@click.option("--down", "direction", flag_value="down", help="One place later.")
@pass_app
def queue_move(app: App, article: str, direction: str | None) -> None:
    """Move ARTICLE (its file name in issues/) one place up or down the queue."""
    if direction is None:
        raise NewsletterError("say --up or --down")
    if app.store.articles.swap_with_neighbour(Path(article).name, up=direction == "up"):
        click.echo(f"moved {Path(article).name} {direction}")
    else:
        click.echo(f"{Path(article).name} is already {'first' if direction == 'up' else 'last'}")


@queue.command("remove")
@click.argument("article")
@pass_app
def queue_remove(app: App, article: str) -> None:
    """Take ARTICLE (its file name in issues/) off the queue; the file is kept."""
    row = app.store.articles.remove_article(Path(article).name)
    click.echo(f"removed {row.filename} from the queue")


# -- subscribers ----------------------------------------------------------------------------
@cli.group()
def subscribers() -> None:
    """Import, list, export and remove subscribers."""


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--reactivate",
    is_flag=True,
    help="Let the file make known unsubscribed, bounced, complained or unconfirmed "
    "addresses active again (never done without it).",
)
@click.option(
    "--welcome", is_flag=True, help="Send the welcome email to the active readers it adds."
)
@pass_app
def subscribers_import(app: App, file: Path, reactivate: bool, welcome: bool) -> None:
    """Import FILE.csv (columns email, name, and optionally status, created_at, tags as
    `export` writes them): the whole file in one transaction, nothing if a row is badly
    quoted."""
    from newsletter.subscribers import import_csv

    result = import_csv(app.store, file, reactivate=reactivate)
    for problem in result.problems:
        click.echo(f"{file}:{problem}", err=True)
    for skipped in result.skipped:
        click.echo(f"{file}:{skipped}", err=True)
    click.echo(
        f"imported {result.imported}, updated {result.updated}, "
        f"rejected {len(result.problems)}, skipped {len(result.skipped)}"
    )
    if welcome:
        from newsletter.welcome import welcome_imported

        click.echo(f"welcomed {welcome_imported(app.settings, app.store, result.added)}")


@subscribers.command("list")
@click.option("--status", help="Only this status (active, unsubscribed, bounced, ...).")
@pass_app
def subscribers_list(app: App, status: str | None) -> None:
    """List subscribers."""
    for row in app.store.subscribers.each(status):
        click.echo(f"{row.email}\t{row.name}\t{row.status}")


@subscribers.command("remove")
@click.argument("email")
@pass_app
def subscribers_remove(app: App, email: str) -> None:
    """Delete a subscriber and their delivery history."""
    app.store.subscribers.remove(email)
    click.echo(f"removed {email}")


@subscribers.command("export")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@pass_app
def subscribers_export(app: App, out: Path | None) -> None:
    """Write every subscriber with their status as CSV (`subscribers import` reads it back;
    cells a spreadsheet would run as formulas get a leading apostrophe, which import removes)."""
    from newsletter.subscribers import export_csv

    if out is None:
        export_csv(app.store.subscribers.each(), sys.stdout)
        return
    with out.open("w", encoding="utf-8", newline="") as handle:
        count = export_csv(app.store.subscribers.each(), handle)
    click.echo(f"wrote {count} subscribers to {out}", err=True)


# -- editors (the web workspace's accounts) ------------------------------------------------
@cli.group()
def editors() -> None:
    """Accounts of the editors who sign in at /admin of `newsletter serve`."""


def _read_password() -> str:
    """Asked twice on a terminal (hidden); otherwise the first line of standard input."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


@editors.command("add")
@click.argument("email")
@click.option(
    "--tz", "timezone", default="", help="The editor's time zone (default: the newsletter's)."
)
@pass_app
def editors_add(app: App, email: str, timezone: str) -> None:
    """Create an editor account; the password is asked for (or read from standard input)."""
    from newsletter.editors import add_editor

    editor = add_editor(app.store, email, _read_password(), timezone)
    click.echo(f"added editor {editor.email}")


@editors.command("password")
@click.argument("email")
@pass_app
def editors_password(app: App, email: str) -> None:
    """Set a new password for EMAIL; the editor's open sessions end."""
    from newsletter.editors import change_password

    editor = change_password(app.store, email, _read_password())
    click.echo(f"changed the password of {editor.email}; their sessions have ended")


@editors.command("list")
@pass_app
def editors_list(app: App) -> None:
    """List the editor accounts."""
    from newsletter.editors import list_editors

    found = list_editors(app.store)
    if not found:
        click.echo("no editors yet: add one with 'newsletter editors add EMAIL'")
    for editor in found:
        click.echo(
            f"{editor.email}\tsince {_local(editor.created_at, app.settings)}"
            + (f"\t{editor.timezone}" if editor.timezone else "")
        )


@editors.command("remove")
@click.argument("email")
@pass_app
def editors_remove(app: App, email: str) -> None:
    """Delete the editor account EMAIL; its sessions end at once."""
    from newsletter.editors import remove_editor

    remove_editor(app.store, email)
    click.echo(f"removed editor {email}")


# -- rendering ------------------------------------------------------------------------------
@cli.command()
@click.argument("source", nargs=-1, required=True)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default="preview",
    show_default=True,
)
@click.option(
    "--screenshot",
    is_flag=True,
    help="Also save desktop, phone and dark-mode PNGs (needs chromium).",
)
@LAYOUT_OPTION
@pass_app
def preview(
    app: App, source: tuple[str, ...], out: Path, screenshot: bool, layout: str | None
) -> None:
    """Write the finished email.html and email.txt for a sample subscriber. SOURCE is one or
    more article files, or an issue number."""
    from newsletter.preview import write_preview

    paths = write_preview(
        app.settings, app.store if _is_issue(source) else None, source, out, layout
    )
    for path in paths:
        click.echo(str(path))
    if screenshot:
        from newsletter.screenshot import capture

        for shot in capture(paths[0], paths[0].parent):
            click.echo(str(shot.path))
            if shot.scrolls_sideways:
                click.echo(
                    f"warning: {shot.view.name}: the layout is {shot.scroll_width}px wide "
                    "and scrolls sideways",
                    err=True,
                )


@cli.command()
@click.argument("source", nargs=-1, required=True)
@LAYOUT_OPTION
@pass_app
def check(app: App, source: tuple[str, ...], layout: str | None) -> None:
    """Lint the finished email of SOURCE (article files or an issue number) before sending;
    the articles are also held to the article contract and checked for spoiler leaks (an
    issue's articles are read from issues/; the output names any that could not be)."""
    from newsletter.check import check_source, format_findings, has_errors

    store = app.store if _is_issue(source) else None
    findings = check_source(app.settings, store, source, layout)
    click.echo(format_findings(findings))
    if has_errors(findings):
        sys.exit(1)


def _is_issue(source: tuple[str, ...]) -> bool:
    return len(source) == 1 and source[0].isdigit() and not Path(source[0]).exists()


# -- sending --------------------------------------------------------------------------------
class _Bars:
    """tqdm progress bars for the issues a command sends; closed when the command ends."""

    def __init__(self) -> None:
        self.bars: list = []

    def __call__(self, issue_id: int, total: int):
        from tqdm import tqdm

        bar = tqdm(
            total=total, desc=f"issue {issue_id}", unit="rcpt", file=sys.stderr, disable=None
        )
        self.bars.append(bar)
        return bar.update

    def close(self) -> None:
        for bar in self.bars:
            bar.close()


def _issue_state(status: str, counts: dict[str, int]) -> str:
    """An issue that finished with uncertain or failed recipients is not simply "sent"."""
    if status != IssueStatus.SENT:
        return status
    left = []
    if counts.get(DeliveryState.UNCERTAIN):
        left.append(f"{counts[DeliveryState.UNCERTAIN]} uncertain left to settle")
    if counts.get(DeliveryState.FAILED):
        left.append(f"{counts[DeliveryState.FAILED]} failed")
    return "finished sending; " + ", ".join(left) if left else status


def _settle_hints(issue_id: int, counts: dict[str, int]) -> list[str]:
    hints = []
    if counts.get(DeliveryState.UNCERTAIN):
        hints.append(
            f"  left to settle: {counts[DeliveryState.UNCERTAIN]} uncertain (they may or may "
            f"not have it): 'newsletter resolve {issue_id} --resend' sends them again, "
            f"'newsletter resolve {issue_id} --mark-sent' counts them as delivered"
        )
    if counts.get(DeliveryState.FAILED):
        hints.append(
            f"  {counts[DeliveryState.FAILED]} failed: the provider refused them for good "
            "(reasons below); nothing is retried"
        )
    return hints


def _print_report(report: delivery.SendReport) -> None:
    counts = report.counts
    click.echo(
        f"issue {report.issue_id}: {_issue_state(report.status, counts)}; "
        f"sent {counts.get(DeliveryState.SENT, 0)}, "
        f"failed {counts.get(DeliveryState.FAILED, 0)}, "
        f"uncertain {counts.get(DeliveryState.UNCERTAIN, 0)}, "
        f"skipped {counts.get(DeliveryState.SKIPPED, 0)}, "
        f"pending {counts.get(DeliveryState.PENDING, 0)}"
    )
    if report.last_error and not report.ok:
        click.echo(f"  last error: {report.last_error}")
    if counts.get(DeliveryState.UNCERTAIN):
        click.echo(
            f"  {counts[DeliveryState.UNCERTAIN]} uncertain: see "
            f"'newsletter status {report.issue_id}' "
            f"and 'newsletter resolve {report.issue_id} --resend|--mark-sent'"
        )


def _print_held(held: list[publish.HeldArticle]) -> None:
    from newsletter.alerts import held_notice

    for article in held:
        click.echo(f"{held_notice(article.filename, article.title)}:", err=True)
        for line in article.reason.splitlines():
            click.echo(f"  {line}", err=True)


def _print_plan(plan: publish.RunPlan) -> None:
    click.echo("dry run: nothing is sent, no issue is made, nothing is used up")
    for issue_id, left in plan.resume:
        click.echo(f"would finish interrupted issue {issue_id}: {left} recipient(s) left")
    for error in plan.skipped:
        click.echo(f"would skip: {error}")
    for held in plan.held:
        click.echo(f"would hold {held.filename}: its check found errors:")
        for line in held.reason.splitlines():
            click.echo(f"  {line}")
    if plan.subject is None:
        click.echo("nothing to send: no queued article is due")
        return
    click.echo(f"would send to {plan.recipients} active subscriber(s)")
    click.echo(f"  subject: {plan.subject}")
    click.echo(f"  layout: {plan.layout}")
    for article in plan.articles:
        click.echo(f"  article: {article.filename} ({article.title})")
    for line in plan.warnings:
        click.echo(line)


@cli.command()
@click.option("--once", is_flag=True, help="Accepted for scripts; 'run' always does one tick.")
@click.option("--force", is_flag=True, help="Send even if the issue's check finds errors.")
@click.option(
    "--dry-run", is_flag=True, help="Show what would go to whom; send and use up nothing."
)
@LAYOUT_OPTION
@pass_app
def run(app: App, once: bool, force: bool, dry_run: bool, layout: str | None) -> None:
    """Do what a due tick does, now: finish any interrupted issue, then pick the queued
    articles, build the issue and send it to every active subscriber. An article whose check
    fails is held and the next one goes out instead (--force sends it anyway). The check's
    warnings are printed before sending. With no active subscriber nothing is sent and the
    articles stay queued."""
    from newsletter import delivery, publish
    from newsletter.doctor.gate import before_run
    from newsletter.providers import make_provider
    from newsletter.records import utcnow

    if dry_run:
        plan = publish.plan_run(app.store, app.settings, force=force, layout=layout)
        _print_plan(plan)
        if plan.subject is not None and not plan.recipients:
            raise NewsletterError(publish.NO_ACTIVE_SUBSCRIBER)
        return
    provider = make_provider(app.settings)  # a bad key or setting is named first
    gate = before_run(app.settings, app.store, force=force, now=utcnow())
    for line in gate.lines:
        click.echo(line, err=True)
    if gate.refuse:
        sys.exit(1)
    bars = _Bars()
    try:
        ctx = delivery.SendContext.of(app.store, app.settings, provider)
        result = publish.publish_tick(
            ctx,
            progress_factory=bars,
            force=force,
            layout=layout,
            warn=lambda line: click.echo(line, err=True),
        )
    finally:
        bars.close()
    for error in result.errors:
        click.echo(f"skipped: {error}", err=True)
    _print_held(result.held_articles)
    for report in result.resumed:
        click.echo("resumed an interrupted issue:")
        _print_report(report)
    if result.report is None:
        click.echo("nothing to send: no queued article is due")
        if result.held_articles:
            sys.exit(1)
        return
    click.echo(f"articles: {', '.join(result.articles)}")
    _print_report(result.report)
    if result.report.status == IssueStatus.PAUSED:
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="The findings as JSON, for scripts.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Will it land? Check the sender's DNS (SPF, DKIM, DMARC, the From domain), the
    unsubscribe link and the bulk-sender rules, with the record to publish for each problem
    (NEWSLETTER_DNS_SERVER=host:port asks that DNS server). Exit 1 on any error."""
    from newsletter.doctor import diagnose
    from newsletter.doctor.gate import remember
    from newsletter.doctor.report import format_report

    report = diagnose(app.settings, app.store)
    remember(app.store, report)
    click.echo(report.to_json() if as_json else format_report(report))
    if report.has_errors:
        sys.exit(1)


@cli.command()
@click.argument("issue_id", type=int, required=False)
@pass_app
def status(app: App, issue_id: int | None) -> None:
    """Counts by delivery state, engagement and the last error of ISSUE (default: the latest
    issue), and the articles held in the queue."""
    if issue_id is None:
        issues = app.store.issues.list_issues()
        if not issues:
            click.echo("no issue yet: 'newsletter run' sends the first one")
        else:
            issue_id = issues[0].id
            click.echo(
                f"the latest issue ({len(issues)} in all; 'newsletter status N' shows "
                "issue N, 'newsletter issues' lists them)"
            )
    from newsletter.alerts import held_notice

    if issue_id is not None:
        _print_status(app, issue_id)
    for row in app.store.articles.queued(held=True):
        if row.status != ArticleStatus.HELD:
            continue
        click.echo(f"{held_notice(row.filename, row.title)}:")
        for line in (row.last_error or "").splitlines():
            click.echo(f"  {line}")


def _print_status(app: App, issue_id: int) -> None:
    issue = app.store.issues.get_issue(issue_id)
    counts = app.store.deliveries.counts(issue_id)
    click.echo(f"issue {issue_id}: {issue.subject}")
    click.echo(
        f"status: {_issue_state(issue.status, counts)}   "
        f"created {_local(issue.created_at, app.settings)}"
    )
    click.echo("  " + "  ".join(f"{state} {n}" for state, n in counts.items()))
    click.echo(
        f"  human opens {issue.opens}  machine opens {issue.machine_opens}  clicks {issue.clicks}"
    )
    if issue.last_error:
        click.echo(f"  last error: {issue.last_error}")
    for hint in _settle_hints(issue_id, counts) if issue.status == IssueStatus.SENT else []:
        click.echo(hint)
    uncertain = app.store.deliveries.in_state(issue_id, DeliveryState.UNCERTAIN)
    if uncertain:
        click.echo(f"uncertain ({len(uncertain)}): resolve with --resend or --mark-sent")
        for row in uncertain:
            click.echo(f"  {row.email}  batch {row.batch}")
    failed = app.store.deliveries.in_state(issue_id, DeliveryState.FAILED)
    if failed:
        click.echo(f"failed ({len(failed)}):")
        for row in failed:
            click.echo(f"  {row.email}  {row.error or ''}")


@cli.command("issues")
@pass_app
def issues_list(app: App) -> None:
    """List issues, newest first."""
    for issue in app.store.issues.list_issues():
        click.echo(
            f"{issue.id:>4}  {issue.status:<9} {_local(issue.created_at, app.settings)}"
            f"  {issue.subject}"
        )


@cli.command()
@click.argument("issue_id", type=int)
@pass_app
def pause(app: App, issue_id: int) -> None:
    """Stop sending ISSUE after the batch in flight."""
    from newsletter import delivery

    delivery.change_issue_status(app.store, issue_id, IssueStatus.PAUSED)
    click.echo(f"issue {issue_id}: paused")


@cli.command()
@click.argument("issue_id", type=int)
@pass_app
def resume(app: App, issue_id: int) -> None:
    """Let a paused ISSUE go on (the next run or scheduler tick sends the rest)."""
    from newsletter import delivery

    delivery.change_issue_status(app.store, issue_id, IssueStatus.SENDING)
    click.echo(f"issue {issue_id}: resumed; the next run or tick sends the rest")


@cli.command()
@click.argument("issue_id", type=int)
@pass_app
def cancel(app: App, issue_id: int) -> None:
    """Send nothing more of ISSUE."""
    from newsletter import delivery

    delivery.change_issue_status(app.store, issue_id, IssueStatus.CANCELLED)
    click.echo(f"issue {issue_id}: cancelled")


@cli.command()
@click.argument("issue_id", type=int)
@click.option("--resend", "action", flag_value="resend", help="Send the uncertain ones again.")
@click.option("--mark-sent", "action", flag_value="mark-sent", help="Count them as delivered.")
@pass_app
def resolve(app: App, issue_id: int, action: str | None) -> None:
    """Settle the uncertain deliveries of ISSUE."""
    from newsletter import delivery

    if action is None:
        raise NewsletterError("say --resend or --mark-sent")
    moved = delivery.resolve_uncertain(app.store, issue_id, resend=action == "resend")
    click.echo(
        f"issue {issue_id}: {moved} uncertain deliveries "
        f"{'queued to send again' if action == 'resend' else 'counted as sent'}"
    )


@cli.command("send-test")
@click.argument("issue_id", type=int)
@click.option("--to", "to", help="Send one copy to this address.")
@click.option(
    "--sandbox",
    is_flag=True,
    help="Validate every request of the issue in SendGrid's sandbox; nothing is delivered.",
)
@pass_app
def send_test(app: App, issue_id: int, to: str | None, sandbox: bool) -> None:
    """Send ISSUE once to the editor, or validate it whole with --sandbox."""
    from newsletter import proofs
    from newsletter.providers import make_provider

    provider = make_provider(app.settings)
    if sandbox:
        if provider.name != "sendgrid":
            raise NewsletterError('--sandbox needs provider = "sendgrid"')
        bars = _Bars()
        try:
            report = proofs.sandbox_validate(
                app.store,
                app.settings,
                provider,
                issue_id,
                progress=bars(issue_id, app.store.subscribers.count()),
            )
        finally:
            bars.close()
        click.echo(
            f"sandbox: {report.requests} requests, {report.recipients} recipients, "
            f"{len(report.problems)} problems"
        )
        for problem in report.problems:
            click.echo(f"  {problem}")
        if report.problems:
            sys.exit(1)
        return
    if not to:
        raise NewsletterError("say --to ADDRESS (or --sandbox)")
    proofs.send_test(app.store, app.settings, provider, issue_id, to)
    click.echo(f"sent issue {issue_id} to {to} through {provider.name}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="A line per request on stderr (a reverse proxy in front may log them already).",
)
@pass_app
def serve(app: App, host: str, port: int, access_log: bool) -> None:
    """Run the web side: sign-up, unsubscribe, archive, SendGrid events, and the editors'
    workspace at /admin (accounts: 'newsletter editors add')."""
    from newsletter.web.app import serve as serve_web

    serve_web(app.settings, host, port, access_log=access_log)


@cli.command("sendgrid-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option(
    "--api-key",
    envvar="SENDGRID_API_KEY",
    default="SG.local-test-key",
    help="The key it accepts (default: SENDGRID_API_KEY).",
)
@click.option("--no-record", is_flag=True, help="Count messages only (for benchmarks).")
@click.option(
    "--sink", is_flag=True, help="Answer 202 and count recipients, no contract checks (ceiling)."
)
def sendgrid_server(host: str, port: int, api_key: str, no_record: bool, sink: bool) -> None:
    """Run the local SendGrid-compatible server (for demos and tests) until Ctrl-C."""
    from newsletter.testing.sendgrid_server import main as server_main  # tests only: lazily

    args = ["--host", host, "--port", str(port), "--api-key", api_key]
    server_main(args + (["--no-record"] if no_record else []) + (["--sink"] if sink else []))


@cli.command()
@click.option("--once", is_flag=True, help="Stop when no issue has anything left to claim.")
@pass_app
def worker(app: App, once: bool) -> None:
    """Help send the issues in progress, alongside other workers on the same database."""
    import signal
    import threading

    from newsletter import delivery
    from newsletter.exceptions import WorkerStopping
    from newsletter.providers import make_provider

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # finish the batch in flight, then stop
        signal.signal(signum, lambda *_: stop.set())
    provider = make_provider(app.settings)
    click.echo(f"worker {delivery.PROCESS_ID} on {app.store.safe_url}")
    try:
        ctx = delivery.SendContext.of(app.store, app.settings, provider)
        report = delivery.run_worker(ctx, stop=stop, once=once, echo=click.echo)
    except KeyboardInterrupt:
        stop.set()
        click.echo("worker stopped")
        return
    except WorkerStopping:
        click.echo("worker stopped between batches")
        return
    click.echo(
        f"worker done: {report.batches} batches for issues "
        f"{', '.join(map(str, sorted(report.issues))) or '-'}"
    )


@cli.command()
@pass_app
def scheduler(app: App) -> None:
    """Run the publication cadence until stopped (Ctrl-C stops cleanly)."""
    from newsletter.scheduler import run_scheduler

    run_scheduler(app.store, app.settings, echo=click.echo)


cli.add_command(segments_commands.segment)
subscribers.add_command(segments_commands.tag)
subscribers.add_command(segments_commands.untag)


def main() -> None:
    cli(prog_name="newsletter")
