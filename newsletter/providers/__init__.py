"""Providers send one batch of one issue. They share one small interface and a few typed
outcomes (`newsletter.exceptions.ProviderError` and its kinds), so the delivery state machine
never needs to know which provider it is driving. Loading this interface loads neither the
database layer nor the renderer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from newsletter.exceptions import ConfigError
from newsletter.links import unsubscribe_urls
from newsletter.records import Recipient, Recipients, RenderedIssue
from newsletter.settings import Settings


@dataclass(frozen=True)
class OutgoingBatch:
    """What a provider needs for one request: the issue rendered once, and who gets it."""

    issue_id: int
    batch: int
    rendered: RenderedIssue
    recipients: Recipients  # given as any sequence of `Recipient`s, kept by columns
    unsubscribe_urls: Sequence[str]
    categories: tuple[str, ...] = ()
    sandbox: bool = False
    # Called by the provider right before it writes the request: raises `Stopped` when the
    # send was stopped (a refused key, a pause, a cancel) after this batch was claimed.
    before_request: Callable[[], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipients", Recipients.of(self.recipients))

    def ready(self) -> None:
        """The last check before the request goes out (see `before_request`)."""
        if self.before_request is not None:
            self.before_request()

    @classmethod
    def of(
        cls,
        settings: Settings,
        issue_id: int,
        batch: int,
        rendered: RenderedIssue,
        recipients: tuple[Recipient, ...],
        *,
        categories: tuple[str, ...] | None = None,
        sandbox: bool = False,
        before_request: Callable[[], None] | None = None,
    ) -> OutgoingBatch:
        """The batch for these recipients, each with their own unsubscribe link."""
        return cls(
            issue_id=issue_id,
            batch=batch,
            rendered=rendered,
            recipients=(readers := Recipients.of(recipients)),
            unsubscribe_urls=unsubscribe_urls(settings, readers.tokens),
            categories=settings.sendgrid.categories if categories is None else categories,
            sandbox=sandbox,
            before_request=before_request,
        )


@dataclass(frozen=True)
class Message:
    """One transactional email (a sign-up confirmation, a welcome): not part of any issue's
    delivery log.
    `category` groups it (an outbox folder, a SendGrid category), `key` names it there."""

    to_email: str
    to_name: str
    subject: str
    text: str
    html: str
    category: str
    key: str
    # A reader's own message (the welcome): their one-click unsubscribe link, sent as
    # List-Unsubscribe with List-Unsubscribe-Post like an issue's. "" for the rest.
    unsubscribe_url: str = ""


@dataclass(frozen=True)
class Accepted:
    """The provider took the batch: one message id for all, or one per subscriber id.
    `rejected` names recipients refused for good (with the reason), `bounced` those of them
    whose address does not exist. A provider that answers per recipient (SMTP) may also name
    recipients `deferred` (not taken, try again later: back to pending) and `uncertain`
    (may have gone out: the connection was lost before the answer)."""

    message_ids: str | dict[int, str]
    rejected: dict[int, str] = field(default_factory=dict)
    bounced: frozenset[int] = frozenset()
    deferred: dict[int, str] = field(default_factory=dict)
    uncertain: dict[int, str] = field(default_factory=dict)


class Provider(Protocol):
    name: str
    max_batch: int

    def send(self, batch: OutgoingBatch) -> Accepted: ...

    def send_message(self, message: Message) -> str:
        """Send one transactional email; returns the provider's message id."""
        ...


@runtime_checkable
class Settles(Protocol):
    """Optional part of the interface, for a provider that can tell what it delivered (the
    outbox: a file exists exactly when its message was written). Recovery asks it about
    uncertain rows, so only providers that cannot know leave them for the editor."""

    def settle_uncertain(self, issue_id: int, subscriber_ids: Iterable[int]) -> dict[int, bool]:
        """subscriber id -> whether this issue was delivered to them."""
        ...


def make_provider(settings: Settings) -> Provider:
    """The provider the settings select (outbox by default); the messages we write ourselves
    (outbox, SMTP) are DKIM-signed when `[dkim]` names a selector."""
    if settings.provider in ("outbox", "smtp"):
        from newsletter.providers.dkim import signer_for

        signer = signer_for(settings)
        sign = signer.sign if signer is not None else None
    if settings.provider == "outbox":
        from newsletter.providers.outbox import OutboxProvider

        return OutboxProvider(settings, sign=sign)
    if settings.provider == "smtp":
        from newsletter.providers.smtp import SMTPProvider

        return SMTPProvider.from_settings(settings, sign=sign)
    if settings.provider == "sendgrid":
        from newsletter.providers.sendgrid import SendGridProvider

        return SendGridProvider.from_settings(settings)
    raise ConfigError(f"unknown provider {settings.provider!r}")
