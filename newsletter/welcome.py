"""The welcome email: sent once to a new reader (on confirming, or on `subscribers import
--welcome`), carrying the latest sent issue as digest cards, never its spoiler text.

Rendered and inlined once per `Welcomer` (Jinja2 + premailer, like an issue) with the same
placeholders, footer and one-click unsubscribe as an issue, and held to the same pre-send
check before anything goes. "Once" is the database's: `Subscribers.claim_welcome` sets
`welcomed_at` in one conditional UPDATE before the provider is asked, so a second click or a
second import never sends another, and a crash after the claim sends none rather than two.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from newsletter.articles import read_article
from newsletter.check import check_rendered, format_findings, has_errors
from newsletter.exceptions import (
    ArticleError,
    CheckFailed,
    NewsletterError,
    ProviderError,
    Uncertain,
)
from newsletter.layouts import Card, card
from newsletter.links import archive_url, article_url, unsubscribe_url, view_url
from newsletter.providers import Message, Provider, make_provider
from newsletter.records import (
    IssueStatus,
    Placeholders,
    RenderedIssue,
    Subscriber,
    SubscriberStatus,
)
from newsletter.render import (
    header_safe,
    inline_css,
    make_environment,
    newsletter_context,
    personalize,
    render_text,
)
from newsletter.settings import Settings
from newsletter.store import Store

log = logging.getLogger(__name__)

CATEGORY = "welcome"
HTML_TEMPLATE = "welcome.html"
TEXT_TEMPLATE = "welcome.txt"
SLUG = "welcome"  # what the pre-send check takes for the email's web address


@dataclass(frozen=True, kw_only=True)
class LatestIssue:
    """The latest sent issue as the welcome shows it: its subject and its cards."""

    subject: str
    url: str
    cards: tuple[Card, ...]


def latest_issue(settings: Settings, store: Store) -> LatestIssue | None:
    """The newest sent issue's articles as cards (title, year, rating, spoiler-safe teaser,
    the link to the page where the ending waits). An article file gone since is shown from
    its stored page: its title and the teaser stored at publication."""
    sent = [i for i in store.issues.list_issues() if i.status == IssueStatus.SENT]
    if not sent:
        return None
    issue = sent[0]
    pages = store.issues.issue_pages(issue.id)
    rows = store.articles.issue_articles(issue.id)
    by_title = {row.title: row for row in rows}
    cards: list[Card] = []
    for page in pages:
        url = article_url(settings, page.slug)
        row = by_title.get(page.title)
        try:
            article = (
                read_article(
                    settings.issues_dir / row.filename, headings=settings.contract.headings
                )
                if row is not None
                else None
            )
        except ArticleError:
            article = None
        if article is not None:
            cards.append(card(article, url, settings.contract))
        else:
            cards.append(
                Card(
                    title=page.title,
                    year=None,
                    author=None,
                    rating=None,
                    rating_text=None,
                    teaser=page.teaser,
                    url=url,
                )
            )
    return LatestIssue(
        subject=issue.subject, url=view_url(settings, issue.slug), cards=tuple(cards)
    )


def render_welcome(settings: Settings, latest: LatestIssue | None) -> RenderedIssue:
    """The welcome rendered and inlined once, the reader's name and unsubscribe link left as
    placeholders (the issue's own, so `personalize` and the pre-send check read it as one)."""
    env = make_environment(settings.templates_dir)
    nonce = secrets.token_hex(8)
    subject = header_safe(f"Welcome to {settings.name}", 250)
    first = latest.cards[0] if latest and latest.cards else None
    preheader = header_safe(
        f"The latest issue: {first.title}. {first.teaser}" if first else subject, 300
    )
    context = {
        "newsletter": newsletter_context(settings),
        "issue": {"subject": subject, "preheader": preheader, "view_url": archive_url(settings)},
        "latest": latest,
        "articles": list(latest.cards) if latest else [],
        "placeholders": Placeholders.make(nonce),
    }
    html = inline_css(env.get_template(HTML_TEMPLATE).render(context))
    text = render_text(env, TEXT_TEMPLATE, context)
    return RenderedIssue(
        subject=subject,
        preheader=preheader,
        html=html,
        text=text,
        archive_html="",
        placeholder_nonce=nonce,
        view_url=view_url(settings, SLUG),
        slug=SLUG,
        layout="digest",
    )


def check_welcome(rendered: RenderedIssue) -> None:
    """The pre-send check every issue passes; CheckFailed with its findings on any error."""
    findings = check_rendered(rendered)
    if has_errors(findings):
        raise CheckFailed(f"the welcome email fails its check:\n{format_findings(findings)}")


class Welcomer:
    """Renders and checks the welcome once, then sends it to each reader at most once."""

    def __init__(self, settings: Settings, store: Store, provider: Provider | None = None):
        self.settings = settings
        self.store = store
        self.provider = provider or make_provider(settings)
        self.rendered = render_welcome(settings, latest_issue(settings, store))
        check_welcome(self.rendered)

    def message(self, subscriber: Subscriber) -> Message:
        url = unsubscribe_url(self.settings, subscriber.token)
        body = personalize(self.rendered, subscriber.name, url)
        return Message(
            to_email=subscriber.email,
            to_name=subscriber.name,
            subject=self.rendered.subject,
            text=body.text,
            html=body.html,
            category=CATEGORY,
            key=str(subscriber.id),
            unsubscribe_url=url,
        )

    def welcome(self, subscriber: Subscriber) -> bool:
        """Send the welcome unless this reader already had it (or is not active). The claim
        comes first: if the provider then says nothing went out, it is given back (only an
        uncertain answer keeps it: a second welcome is worse than none)."""
        if not self.store.subscribers.claim_welcome(subscriber.id):
            return False
        try:
            self.provider.send_message(self.message(subscriber))
        except ProviderError as exc:
            if not isinstance(exc, Uncertain):
                self.store.subscribers.release_welcome(subscriber.id)
            raise
        return True

    def welcome_all(self, subscribers: Iterable[Subscriber]) -> int:
        """Welcome each; one reader's failure is logged and the others still get theirs."""
        sent = 0
        for subscriber in subscribers:
            try:
                sent += self.welcome(subscriber)
            except NewsletterError as exc:
                log.error("welcome email for subscriber %s not sent: %s", subscriber.id, exc)
        return sent


def welcome_new_reader(settings: Settings, store: Store, subscriber_id: int) -> bool:
    """The confirmation's welcome, when `[welcome] enabled`: True if one was sent now."""
    if not settings.welcome.enabled:
        return False
    subscriber = store.subscribers.by_id(subscriber_id)
    if subscriber is None:
        return False
    return Welcomer(settings, store).welcome(subscriber)


def welcome_imported(settings: Settings, store: Store, addresses: Iterable[str]) -> int:
    """`subscribers import --welcome`: welcome the active readers the import added, each
    once (an address welcomed before, or not active, is passed over). Returns how many."""
    found = (store.subscribers.by_email(address) for address in addresses)
    chosen = [s for s in found if s is not None and s.status == SubscriberStatus.ACTIVE]
    if not chosen:
        return 0
    return Welcomer(settings, store).welcome_all(chosen)
