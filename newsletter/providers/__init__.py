"""Providers send one batch of one issue. They share one small interface and a few typed
outcomes, so the delivery state machine never needs to know which provider it is driving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from newsletter.config import Settings
from newsletter.errors import ConfigError, NewsletterError
from newsletter.render import RenderedIssue, unsubscribe_url
from newsletter.store import Recipient


@dataclass(frozen=True)
class OutgoingBatch:
    """What a provider needs for one request: the issue rendered once, and who gets it."""

    issue_id: int
    batch: int
    rendered: RenderedIssue
    recipients: tuple[Recipient, ...]
    unsubscribe_urls: tuple[str, ...]
    categories: tuple[str, ...] = ()
    sandbox: bool = False

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
    ) -> OutgoingBatch:
        """The batch for these recipients, each with their own unsubscribe link."""
        return cls(
            issue_id=issue_id,
            batch=batch,
            rendered=rendered,
            recipients=recipients,
            unsubscribe_urls=tuple(unsubscribe_url(settings, r.token) for r in recipients),
            categories=settings.sendgrid.categories if categories is None else categories,
            sandbox=sandbox,
        )


@dataclass(frozen=True)
class Message:
    """One transactional email (a sign-up confirmation): not part of any issue's delivery log.
    `category` groups it (an outbox folder, a SendGrid category), `key` names it there."""

    to_email: str
    to_name: str
    subject: str
    text: str
    html: str
    category: str
    key: str


@dataclass(frozen=True)
class Accepted:
    """The provider took the batch: one message id for all, or one per subscriber id.
    `rejected` names recipients left out because the provider would refuse them."""

    message_ids: str | dict[int, str]
    rejected: dict[int, str] = field(default_factory=dict)


class ProviderError(NewsletterError):
    """Base of the outcomes the delivery layer acts on."""


class RateLimited(ProviderError):
    def __init__(self, message: str, retry_at: float | None) -> None:
        super().__init__(message)
        self.retry_at = retry_at  # unix time, or None to back off


class TransientError(ProviderError):
    """Nothing was taken (clear 5xx answer, refused connection): retry with backoff."""


class Rejected(ProviderError):
    """The provider refused this batch for good (SendGrid 400): do not retry it."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class CredentialsRefused(ProviderError):
    """The key or the sender is refused (401/403): stop the whole issue."""


class TooLarge(ProviderError):
    """The request body is too large (413): split the batch."""


class Uncertain(ProviderError):
    """The request may have gone out (timeout or reset after sending): never resend silently."""


class Provider(Protocol):
    name: str
    max_batch: int

    def send(self, batch: OutgoingBatch) -> Accepted: ...

    def send_message(self, message: Message) -> str:
        """Send one transactional email; returns the provider's message id."""
        ...


def make_provider(settings: Settings) -> Provider:
    """The provider the settings select (outbox by default)."""
    if settings.provider == "outbox":
        from newsletter.providers.outbox import OutboxProvider

        return OutboxProvider(settings)
    if settings.provider == "sendgrid":
        from newsletter.providers.sendgrid import SendGridProvider

        return SendGridProvider.from_settings(settings)
    raise ConfigError(f"unknown provider {settings.provider!r}")
