"""Tell the editors when something needs them. Two ways, each the only one of its kind:

- an article held because its issue's check failed (`hold_article`): held in the queue, a log
  line, and an email to `[editor] email` at once, as the tick holds it; `held_notice` is the
  one sentence every command says about such an article;
- the alerts (`send_alerts`): an unreadable article (skipped until its file reads again), a
  missed tick (due while the scheduler was down, beyond the grace period), sending stopped by the deliverability
  check (doctor.gate), an issue paused (failures, a refused key, the deliverability check),
  uncertain recipients left on an issue that is no longer sending. One email per event
  to every editor account, through the configured provider, at most once: each event has a
  key, claimed in the database (`alerts_sent`) before anything is sent, so several
  schedulers or repeated wake-ups never send it twice. An issue still awaiting approval
  `approval_deadline_minutes` before its slot is one of them (`approval_alerts`, which the
  workspace also shows on every page)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from html import escape

from newsletter.approval import overdue
from newsletter.editors import list_editors
from newsletter.exceptions import NewsletterError
from newsletter.links import admin_url
from newsletter.providers import Message, Provider
from newsletter.records import utcnow
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.store.meta import MISSED_TICK

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    key: str  # the event: the same event always has the same key
    subject: str
    text: str
    link: str


def _digest(value: str | None) -> str:
    return hashlib.sha256((value or "").encode()).hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class HeldArticle:
    """An article a tick held because the issue's check found errors in it."""

    article_id: int
    filename: str
    title: str
    reason: str


def held_notice(filename: str, title: str | None = None) -> str:
    """What every command and the editor's email say about an article its check held."""
    who = f"{filename} ({title})" if title else filename
    return (
        f"held {who}: its check found errors; the queue goes on without it. Fix it, then "
        f"'newsletter queue release {filename}' ('newsletter run --force' sends it as it is)"
    )


def hold_article(store: Store, settings: Settings, provider: Provider, held: HeldArticle) -> bool:
    """Hold the article and tell the editor once: a log line, and an email to `[editor] email`
    when set. False (and nothing said) when it was no longer queued, e.g. already held."""
    if not store.articles.hold_article(held.article_id, held.reason):
        return False
    log.warning("%s", held_notice(held.filename))
    if settings.editor_email:
        text = f"{held_notice(held.filename, held.title)}.\n\n{held.reason}\n"
        message = Message(
            to_email=settings.editor_email,
            to_name="",
            subject=f"{settings.name}: held {held.filename}",
            text=text,
            html=f"<pre>{escape(text)}</pre>",
            category="editor",
            key=f"held-{held.article_id}-{utcnow():%Y%m%dT%H%M%S}",
        )
        try:
            provider.send_message(message)
        except NewsletterError as exc:  # telling the editor must never stop the tick
            log.error("could not email the editor about %s: %s", held.filename, exc)
    return True


def approval_alerts(store: Store, settings: Settings, now: datetime | None = None) -> list[Alert]:
    """Issues still awaiting approval close to (or past) their slot: one alert each."""
    found = []
    for issue in overdue(store, settings, now):
        when = (
            issue.scheduled_for.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")
            if issue.scheduled_for
            else "its slot"
        )
        found.append(
            Alert(
                f"approval-missing:{issue.id}",
                f"Issue {issue.id} awaits approval (due {when})",
                f"Issue {issue.id} ({issue.subject}) is due at {when} and nobody has approved it "
                "yet: it will not go out until an editor other than the one who queued its "
                f"articles approves it ('newsletter approve {issue.id} --editor EMAIL').",
                admin_url(settings, f"/issues/{issue.id}"),
            )
        )
    return found


def pending_alerts(store: Store, settings: Settings, now: datetime | None = None) -> list[Alert]:
    """What needs an editor now (whether or not it was already told)."""
    from newsletter.doctor.gate import PAUSE_REASON, refusal  # loads dnspython: not at import

    found: list[Alert] = approval_alerts(store, settings, now)
    for row in store.articles.articles_with_errors():
        found.append(
            Alert(
                f"unreadable-article:{row.id}:{_digest(row.last_error)}",
                f"Unreadable article: {row.filename}",
                f"The article {row.filename} cannot be read, so the queue goes on without it "
                f"until its file is fixed: {row.last_error}",
                admin_url(settings, "/queue"),
            )
        )
    missed = store.meta.moment(MISSED_TICK)
    if missed is not None:
        local = missed.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")
        found.append(
            Alert(
                f"held-tick:{missed.isoformat()}",  # the key as first named: sent once, ever
                f"Issue missed: {local}",
                f"The issue due at {local} was missed while the scheduler was down. "
                "Run 'newsletter run' to send it now.",
                admin_url(settings, "/queue"),
            )
        )
    refused_by = refusal(store)
    if refused_by is not None:
        errors = refused_by.errors
        found.append(
            Alert(
                "deliverability:" + _digest("\n".join(f"{f.domain}: {f.message}" for f in errors)),
                f"Not sending: {len(errors)} deliverability error(s) for {refused_by.domain}",
                f"The scheduler sends nothing through {refused_by.provider} while the "
                f"deliverability check of {refused_by.domain} finds errors (issues in progress "
                "are paused): "
                + "; ".join(f"{f.check} {f.domain}: {f.message}" for f in errors)
                + ". The Deliverability page shows the records to publish and checks again.",
                admin_url(settings, "/deliverability"),
            )
        )
    for issue in store.issues.issues_needing_editors():
        if issue.status == "paused":
            error = issue.last_error or ""
            refused = "refused" in error.lower() or "401" in error
            what = (
                "deliverability errors"
                if error.startswith(PAUSE_REASON)
                else "the provider refused the key"
                if refused
                else "sending failed"
            )
            found.append(
                Alert(
                    f"paused:{issue.id}:{_digest(issue.last_error)}",
                    f"Issue {issue.id} paused: {what}",
                    f"Issue {issue.id} ({issue.subject}) is paused: "
                    f"{issue.last_error or 'paused by an editor'}",
                    admin_url(settings, f"/issues/{issue.id}"),
                )
            )
        if issue.uncertain and issue.status != "sending":
            found.append(
                Alert(
                    f"uncertain:{issue.id}:{issue.uncertain}",
                    f"Issue {issue.id}: {issue.uncertain} uncertain recipients",
                    f"Issue {issue.id} ({issue.subject}) has {issue.uncertain} "
                    "recipients who may or may not have it: resend them or count them as "
                    f"delivered ('newsletter resolve {issue.id} --resend' or '--mark-sent', or "
                    "the issue's page).",
                    admin_url(settings, f"/issues/{issue.id}"),
                )
            )
    return found


def send_alerts(
    store: Store, settings: Settings, provider: Provider, now: datetime | None = None
) -> list[Alert]:
    """Send each new alert once to every editor; returns the alerts sent this time."""
    editors = list_editors(store)
    if not editors:
        return []
    sent: list[Alert] = []
    for alert in pending_alerts(store, settings, now):
        if not store.alerts.claim(alert.key):
            continue
        try:
            for editor in editors:
                provider.send_message(_message(settings, alert, editor.email, editor.id))
        except NewsletterError as exc:
            store.alerts.release(alert.key)  # try again at the next wake-up
            log.error("alert %r not sent: %s", alert.subject, exc)
            continue
        sent.append(alert)
    return sent


def _message(settings: Settings, alert: Alert, email: str, editor_id: int) -> Message:
    """The alert's email to one editor; its key (the event's and the editor's) lets a
    provider that keeps keys send it once."""
    html = (
        f"<p>{escape(alert.text)}</p>"
        f'<p><a href="{escape(alert.link, quote=True)}">{escape(alert.link)}</a></p>'
    )
    return Message(
        to_email=email,
        to_name="",
        subject=f"[{settings.name}] {alert.subject}",
        text=f"{alert.text}\n\n{alert.link}\n",
        html=html,
        category="alerts",
        key=f"{_digest(alert.key)}-{editor_id}",
    )


def sign_in_alert(
    store: Store,
    settings: Settings,
    provider: Provider,
    *,
    email: str,
    failures: int,
    window_end: float,
) -> bool:
    """Tell an editor, once per throttling window, that their account is getting wrong
    passwords (the workspace's sign-in form calls this when the count passes its threshold).
    False when the address is no editor's, or the window's email already went out."""
    editor = store.editors.by_email(email)
    if editor is None:
        return False
    key = f"sign-in-attack:{editor.id}:{int(window_end)}"
    if not store.alerts.claim(key):
        return False
    text = (
        f"The sign-in form of {settings.name}'s workspace received {failures} wrong passwords "
        f"for {editor.email} in the last 15 minutes. Sign-ins to your account are slowed down, "
        "and each client that keeps failing is refused, but you can still sign in. If this "
        "was not you, choose a longer password with 'newsletter editors password'."
    )
    alert = Alert(key, "Wrong passwords for your account", text, admin_url(settings, "/login"))
    try:
        provider.send_message(_message(settings, alert, editor.email, editor.id))
    except NewsletterError as exc:
        store.alerts.release(key)
        log.error("could not email %s about failed sign-ins: %s", editor.email, exc)
        return False
    return True
