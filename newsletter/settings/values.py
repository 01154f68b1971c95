"""The settings the code reads: frozen, keyword-only records, standard library only.

They declare no defaults: every value is resolved from newsletter.toml by `load`, and the
defaults live once, in `schema`. Secrets are never fields here, so printing settings cannot
leak them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from newsletter.readertime import ReaderTime

if TYPE_CHECKING:
    from newsletter.contract import Contract


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When issues go out ([schedule])."""

    days: tuple[str, ...]
    at: time
    articles_per_issue: int
    grace: timedelta
    # The sending lease: a scheduler that dies loses it after this long and a standby takes
    # over; the heartbeat renews it and looks for due work.
    lease: timedelta
    heartbeat: timedelta


@dataclass(frozen=True, kw_only=True)
class DeliverySettings:
    """How an issue is sent, whatever the provider ([delivery])."""

    batch_size: int
    concurrency: int
    max_retries: int
    max_failed_batches: int
    # Capped exponential backoff between retries of a transient failure.
    backoff_base: timedelta
    backoff_cap: timedelta
    resend_uncertain: bool
    claim_timeout: timedelta


@dataclass(frozen=True, kw_only=True)
class SendGridSettings:
    """The SendGrid provider's own settings ([sendgrid])."""

    api_host: str
    timeout_seconds: float
    categories: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class DkimSettings:
    """Our own DKIM signing ([dkim]); an empty selector: the provider signs, or nobody does.
    The private key is DKIM_PRIVATE_KEY when set, else the file."""

    selector: str
    domain: str  # "" means the From domain
    private_key_file: Path | None


@dataclass(frozen=True, kw_only=True)
class SMTPSettings:
    """The SMTP provider's own settings ([smtp]); the password is `SMTP_PASSWORD` in the
    environment, never a field here."""

    host: str
    port: int
    security: str  # starttls | tls | none (none only for 127.0.0.1/localhost)
    username: str  # "" logs in as nobody
    connections: int
    messages_per_connection: int
    timeout_seconds: float
    max_per_second: float  # 0: no limit
    bounce_address: str  # "" sends with the From address as the envelope sender (no VERP)
    ca_file: str  # "" trusts the system's CAs only
    max_retries: int  # [delivery] max_retries: rounds without progress before deferring

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class SendingSettings:
    """Paced sending ([sending]): caps per clock hour and calendar day (0: no limit), and the
    warm-up plan's daily caps from the first paced send on (empty: no warm-up)."""

    max_per_hour: int
    max_per_day: int
    warmup: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class BouncesSettings:
    """Where `newsletter bounces` reads reports ([bounces]): a Maildir or mbox path, or an
    IMAP mailbox (password `BOUNCES_PASSWORD`); how often the scheduler reads it."""

    mailbox: Path | None
    imap_host: str
    imap_port: int
    imap_user: str
    imap_folder: str
    every_minutes: int  # 0: the scheduler does not read it

    @property
    def source(self) -> str:
        """What `bounces.mailboxes.read_mailbox` reads; "" when nothing is configured."""
        if self.imap_host:
            from urllib.parse import quote

            user = quote(self.imap_user, safe="")
            return f"imaps://{user}@{self.imap_host}:{self.imap_port}/{quote(self.imap_folder)}"
        return str(self.mailbox) if self.mailbox else ""


@dataclass(frozen=True, kw_only=True)
class Approval:
    """A second pair of eyes before a scheduled issue goes out ([issue] approval...)."""

    required: bool
    # Still awaiting approval this long before its slot: every editor is alerted.
    deadline: timedelta
    allow_self: bool  # the editor who queued the articles may approve them too


@dataclass(frozen=True, kw_only=True)
class Feed:
    """One `[[feeds]]` entry: a site's feed whose new entries are queued as articles."""

    url: str
    every: timedelta
    layout: str  # "" (the issue's automatic choice), "full" or "digest"
    backlog: int  # entries taken from the feed's first poll; older ones count as seen
    timeout_seconds: float


@dataclass(frozen=True, kw_only=True)
class WelcomeSettings:
    """The welcome email a new reader gets once ([welcome])."""

    enabled: bool


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the code reads from newsletter.toml, zones, durations and paths resolved."""

    root: Path
    name: str
    from_email: str
    from_name: str
    base_url: str
    postal_address: str
    language: str
    timezone: ZoneInfo
    database_url: str
    provider: str
    schedule: Schedule
    delivery: DeliverySettings
    outbox_path: Path
    sendgrid: SendGridSettings
    collapse_is_error: bool
    # "warning" or "error": how `check` and every send treat a spoiler leak ([check]).
    spoiler_leak: str
    # "full" or "digest" for a one-article issue; several articles make a digest ([issue]).
    layout: str
    subject_template: str
    approval: Approval
    # `[issue] deliver_at = "local HH:MM"`: each reader at that time on their clock; None:
    # every reader at once.
    deliver_at: ReaderTime | None
    feeds: tuple[Feed, ...]
    # The article contract ([articles]): sections, their order, which are spoilers.
    contract: Contract
    editor_email: str  # "" when nobody is to be emailed about held articles
    forwarded_allow_ips: str  # [web]: the proxies whose X-Forwarded-For uvicorn believes
    dkim: DkimSettings
    smtp: SMTPSettings
    bounces: BouncesSettings
    sending: SendingSettings
    welcome: WelcomeSettings
    # The audience of every issue: a segment expression (newsletter.segments); "" is everyone.
    segment: str
    # The package's own templates, used when the folder has no templates/ of its own.
    builtin_templates: Path

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def templates_dir(self) -> Path:
        """The folder's own `templates/` when the editor has one, else the built-in set."""
        own = self.root / "templates"
        return own if own.is_dir() else self.builtin_templates
