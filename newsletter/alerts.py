"""Tell the editors when something needs them: a held article (it cannot be read), a held
tick (missed while the scheduler was down), an issue paused (failures, or a refused key),
uncertain recipients left on an issue that is no longer sending. One email per event to
every editor, through the configured provider, at most once: each event has a key, claimed
in the database (`alerts_sent`) before anything is sent, so several schedulers or repeated
wake-ups never send it twice."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from newsletter import publish
from newsletter.config import Settings
from newsletter.editors import list_editors
from newsletter.exceptions import NewsletterError
from newsletter.links import admin_url
from newsletter.providers import Message, Provider
from newsletter.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    key: str  # the event: the same event always has the same key
    subject: str
    text: str
    link: str


def _digest(value: str | None) -> str:
    return hashlib.sha256((value or "").encode()).hexdigest()[:12]


def pending_alerts(store: Store, settings: Settings) -> list[Alert]:
    """What needs an editor now (whether or not it was already told)."""
    found: list[Alert] = []
    for row in store.workspace.articles_with_errors():
        found.append(
            Alert(
                f"held-article:{row.id}:{_digest(row.last_error)}",
                f"Held article: {row.filename}",
                f"The article {row.filename} was not sent: {row.last_error}",
                admin_url(settings, "/queue"),
            )
        )
    held = publish.held_tick(store)
    if held is not None:
        local = held.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")
        found.append(
            Alert(
                f"held-tick:{held.isoformat()}",
                f"Issue held: {local}",
                f"The issue due at {local} was missed while the scheduler was down. "
                "Run 'newsletter run --once' to send it now.",
                admin_url(settings, "/queue"),
            )
        )
    for issue in store.workspace.issues_needing_editors():
        if issue.status == "paused":
            refused = "refused" in (issue.last_error or "").lower() or "401" in (
                issue.last_error or ""
            )
            what = "the provider refused the key" if refused else "sending failed"
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
                    "recipients who may or may not have it. Resend or mark them sent.",
                    admin_url(settings, f"/issues/{issue.id}"),
                )
            )
    return found


def send_alerts(store: Store, settings: Settings, provider: Provider) -> list[Alert]:
    """Send each new alert once to every editor; returns the alerts sent this time."""
    editors = list_editors(store)
    if not editors:
        return []
    sent: list[Alert] = []
    for alert in pending_alerts(store, settings):
        if not store.workspace.claim_alert(alert.key):
            continue
        try:
            for editor in editors:
                provider.send_message(
                    Message(
                        to_email=editor.email,
                        to_name="",
                        subject=f"[{settings.name}] {alert.subject}",
                        text=f"{alert.text}\n\n{alert.link}\n",
                        html=_html(alert),
                        category="alerts",
                        key=f"{_digest(alert.key)}-{editor.id}",
                    )
                )
        except NewsletterError as exc:
            store.workspace.release_alert(alert.key)  # try again at the next wake-up
            log.error("alert %r not sent: %s", alert.subject, exc)
            continue
        sent.append(alert)
    return sent


def _html(alert: Alert) -> str:
    from html import escape

    return (
        f"<p>{escape(alert.text)}</p>"
        f'<p><a href="{escape(alert.link, quote=True)}">{escape(alert.link)}</a></p>'
    )
