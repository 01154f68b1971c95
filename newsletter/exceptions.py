"""Every exception of the project, in one place. Standard library only.

Each one is a `NewsletterError`: its message is meant for the user as is (it names the file,
the line, the setting or the database), so the CLI prints it on one line, never a traceback.

    NewsletterError
    ├── ConfigError              a setting is missing or invalid
    ├── ArticleError             an article file cannot be used (file and line)
    ├── NotFound                 the named issue, article or subscriber does not exist
    ├── CheckFailed              the finished email has errors: nothing was sent
    ├── NoActiveSubscriber       nobody to send to: no issue made, the articles stay queued
    ├── ContractBroken           an article breaks the article contract ([articles])
    ├── AwaitingApproval         the issue waits for an editor's approval: names the command
    ├── ApprovalRefused          this approval or rejection is not allowed (who, or the state)
    ├── FeedError                a feed cannot be fetched or read (names the feed and why)
    ├── ScreenshotError          Chromium or chromedriver is missing or failed
    ├── MissingExtra             a feature needs an optional extra: names the pip command
    ├── UnwritableAddress        a recipient's address cannot go in a To header (that row fails)
    ├── BadRequest               a web request the app cannot use
    │   ├── BodyTooLarge         a request body over its cap (413, or the form's error page)
    │   └── MalformedEvents      not what SendGrid's webhook posts; says where (the 400)
    ├── SenderBusy               another process holds the sending lease
    ├── LeaseLost                this process stalled past its lease: it stops sending
    ├── WorkerStopping           a stop was asked for: stops between batches, resumable
    ├── StoreError               the database failed (names the database, secrets hidden)
    │   ├── Duplicate            a unique key already exists (e.g. a sign-up race)
    │   ├── DatabaseUnavailable  cannot connect, or locked for too long
    │   └── ReadOnlyDatabase     the file or the transaction is read-only
    └── ProviderError            the outcomes of a provider request the delivery layer acts on
        ├── RateLimited          retry at `retry_at` (or back off)
        ├── TransientError       nothing was taken: retry with backoff
        │   └── Unreachable      no connection (refused, timeout, DNS): retry, then pause
        ├── Rejected             refused for good: do not retry this batch
        ├── CredentialsRefused   the key or the sender is refused: stop the issue
        ├── TooLarge             the request is too large: split the batch
        ├── NotSent              the request was never written (could not be built)
        │   └── Stopped          a stop came before the request was written
        └── Uncertain            may have gone out: never resend silently
"""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Base of every error a user can act on; its message is meant to be printed as is."""


class ConfigError(NewsletterError):
    """A setting is missing or invalid; the message names the file and the key."""


class ArticleError(NewsletterError):
    """An article file cannot be used; names the file and, when known, the line."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line else f"{self.path}"
        super().__init__(f"{where}: {message}")


class NotFound(NewsletterError):
    """The issue, article or subscriber named on the command line does not exist."""


class CheckFailed(NewsletterError):
    """The finished email has errors (`newsletter check`); nothing was sent. `report` is the
    check's errors, formatted: the reason an article is held."""

    def __init__(self, message: str, report: str = "") -> None:
        super().__init__(message)
        self.report = report


class NoActiveSubscriber(NewsletterError):
    """No subscriber is active: no issue is built, so its articles stay queued."""


class SenderBusy(NewsletterError):
    """Another process holds the sending lease (a second scheduler, or a run in progress)."""


class LeaseLost(NewsletterError):
    """This process stalled past its lease and another sender may have taken over."""


class WorkerStopping(NewsletterError):
    """Raised between batches once a stop was asked for (a worker, or a scheduler shutting
    down); the issue stays resumable."""


# -- the database -------------------------------------------------------------------------
class StoreError(NewsletterError):
    """The database refused a write or a read (read-only file, full disk, locked)."""


class Duplicate(StoreError):
    """A row with the same unique key exists already (another process inserted it first)."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached (no server, wrong path) or stayed locked too long."""


class ReadOnlyDatabase(StoreError):
    """The database file, its folder or the transaction is read-only."""


# -- provider outcomes --------------------------------------------------------------------
class ProviderError(NewsletterError):
    """Base of the outcomes the delivery layer acts on."""


class RateLimited(ProviderError):
    def __init__(self, message: str, retry_at: float | None) -> None:
        super().__init__(message)
        self.retry_at = retry_at  # unix time, or None to back off


class TransientError(ProviderError):
    """Nothing was taken (clear 5xx answer, refused connection): retry with backoff."""


class Unreachable(TransientError):
    """The provider could not be reached (connection refused, connect timeout, DNS failure):
    nothing was taken. Not a refusal: after the retries the rows stay pending and the issue
    is paused until the provider is back."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot reach the provider at {host}: {reason}")
        self.host = host
        self.reason = reason


class Rejected(ProviderError):
    """The provider refused this batch for good (SendGrid 400): do not retry it."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class CredentialsRefused(ProviderError):
    """The key or the sender is refused (401/403): stop the whole issue."""


class TooLarge(ProviderError):
    """The request body is too large (413): split the batch."""


class NotSent(ProviderError):
    """The request was never written (it could not be built or encoded): nothing went out,
    so the batch goes back to pending; repeated, it counts towards pausing the issue."""


class Stopped(NotSent):
    """The send was stopped (refused key, pause, cancel) after this batch was claimed and
    before its request was written: the batch goes back to pending, nothing is counted."""


class Uncertain(ProviderError):
    """The request may have gone out (timeout or reset after sending): never resend silently."""


class ContractBroken(NewsletterError):
    """The article breaks the article contract (`[articles]` in newsletter.toml)."""


class AwaitingApproval(NewsletterError):
    """`[issue] approval = "required"` and the next issue is not approved yet: nothing is
    sent; the message names the issue and the command that approves it."""

    def __init__(self, message: str, issue_id: int) -> None:
        self.issue_id = issue_id
        super().__init__(message)


class ApprovalRefused(NewsletterError):
    """An approval or rejection that is not allowed: by the editor who queued the articles
    (without `allow_self_approval`), or of an issue no longer awaiting approval."""


class FeedError(NewsletterError):
    """A feed could not be fetched or read; the message names the feed and what failed."""


class ScreenshotError(NewsletterError):
    """Chromium or chromedriver is missing or failed; the message says what to install."""


class MissingExtra(NewsletterError):
    """A feature needs an optional part of the package (pyproject.toml's extras) that is not
    installed; the message names the feature, the extra and the command that installs it."""

    def __init__(self, extra: str, feature: str) -> None:
        self.extra = extra
        super().__init__(f"{feature} needs the {extra} extra: pip install 'newsletter[{extra}]'")


class UnwritableAddress(NewsletterError):
    """The recipient's address cannot be put in a `To` header (the outbox fails that row)."""


# -- web requests -------------------------------------------------------------------------
class BadRequest(NewsletterError):
    """A request the web app cannot use; where it is caught, it becomes a 4xx answer."""


class BodyTooLarge(BadRequest):
    """A request body over its cap (web/bodies.py)."""


class MalformedEvents(BadRequest):
    """The webhook body is not what SendGrid posts; the message says where (the 400)."""
