"""Settings from `newsletter.toml`, overridden by `NEWSLETTER_*` environment variables.

Secrets (the SendGrid key, the link-signing key) are read from the environment only and are
never part of `Settings`' repr, so printing settings cannot leak them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError

CONFIG_NAME = "newsletter.toml"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PROVIDERS = ("outbox", "sendgrid")

DEFAULT_TOML = """\
# newsletter settings. Secrets never go here: set SENDGRID_API_KEY and
# NEWSLETTER_SECRET_KEY in the environment. NEWSLETTER_DATABASE_URL, NEWSLETTER_PROVIDER
# and NEWSLETTER_BASE_URL override the values below.

[newsletter]
name = "Endings Explained"
from_email = "editor@example.com"
from_name = "Endings Explained"
# Public address of `newsletter serve`: unsubscribe and view-in-browser links point here.
base_url = "http://127.0.0.1:8000"
# CAN-SPAM: a physical postal address in every email.
postal_address = "Endings Explained, 1 Example Street, 75001 Paris, France"
language = "en"
timezone = "Europe/Paris"
# Any SQLAlchemy URL; relative SQLite paths are relative to this file.
database_url = "sqlite:///newsletter.db"
# "outbox" writes .eml files and needs no account; "sendgrid" needs SENDGRID_API_KEY.
provider = "outbox"

[editor]
# Who is emailed (through the provider above) when an article is held because its check
# found errors; the next article goes out meanwhile. Empty: the log line only.
email = ""

[schedule]
# Publication cadence, in the timezone above.
days = ["tue", "fri"]
time = "09:00"
articles_per_issue = 1
# A tick missed while the scheduler was down still goes out within this many hours;
# after that the issue waits for the editor.
grace_hours = 6
# Two schedulers on one database never both send: one holds a lease for this long, renewed
# while it lives; if it dies, the other takes over once the lease runs out.
lease_seconds = 60
heartbeat_seconds = 10

[delivery]
# A batch in flight when the sender crashed may or may not have gone out. false: hold those
# subscribers as "uncertain" for provider events or the editor; true: resend them (for a list
# that prefers a rare duplicate to a gap).
resend_uncertain = false
# A batch claimed by a sender on another machine that has been in flight this long is taken
# as abandoned (its sender died) and becomes uncertain. Keep it above the request timeout.
claim_timeout_seconds = 120

[check]
# An issue too large for Gmail (about 102 KB of HTML) has its later articles shortened to
# title, teaser and a link. true: refuse to send it instead.
collapse_is_error = false

[outbox]
path = "outbox"

[sendgrid]
# SENDGRID_API_HOST overrides the API address (EU accounts, the local test server).
api_host = "https://api.sendgrid.com"
timeout_seconds = 15
batch_size = 1000
categories = ["newsletter"]
max_retries = 5
max_failed_batches = 3
# Requests in flight at once for one issue (each its own batch in the delivery log).
concurrency = 4
"""


@dataclass(frozen=True)
class Schedule:
    days: tuple[str, ...] = ("tue", "fri")
    at: time = time(9, 0)
    articles_per_issue: int = 1
    grace: timedelta = timedelta(hours=6)
    # The sending lease: a scheduler that dies loses it after this long and a standby takes
    # over; the heartbeat renews it and looks for due work.
    lease: timedelta = timedelta(seconds=60)
    heartbeat: timedelta = timedelta(seconds=10)


@dataclass(frozen=True)
class SendGridSettings:
    api_host: str = "https://api.sendgrid.com"
    timeout_seconds: float = 15.0
    batch_size: int = 1000
    categories: tuple[str, ...] = ("newsletter",)
    max_retries: int = 5
    max_failed_batches: int = 3
    concurrency: int = 4


@dataclass(frozen=True)
class Settings:
    root: Path
    name: str = "Endings Explained"
    from_email: str = "editor@example.com"
    from_name: str = "Endings Explained"
    base_url: str = "http://127.0.0.1:8000"
    postal_address: str = ""
    language: str = "en"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    database_url: str = "sqlite:///newsletter.db"
    provider: str = "outbox"
    schedule: Schedule = field(default_factory=Schedule)
    outbox_path: Path = Path("outbox")
    sendgrid: SendGridSettings = field(default_factory=SendGridSettings)
    resend_uncertain: bool = False
    claim_timeout: timedelta = timedelta(seconds=120)
    collapse_is_error: bool = False
    editor_email: str = ""

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def templates_dir(self) -> Path:
        """The folder's own `templates/` when the editor has one, else the built-in set."""
        own = self.root / "templates"
        return own if own.is_dir() else BUILTIN_TEMPLATES


BUILTIN_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def secret(name: str) -> str | None:
    """Read a secret from the environment; secrets have no place in files or output."""
    value = os.environ.get(name)
    return value or None


def find_config(start: Path | None = None) -> Path | None:
    """The nearest `newsletter.toml` in `start` or its parents."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Load settings from `path` (or the nearest newsletter.toml) and the environment."""
    env = dict(os.environ if env is None else env)
    path = path or find_config()
    if path is None:
        raise ConfigError(
            f"no {CONFIG_NAME} here or in any parent folder: run 'newsletter init' first"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return settings_from_dict(data, path.parent.resolve(), env, source=str(path))


def settings_from_dict(
    data: dict, root: Path, env: dict[str, str] | None = None, source: str = CONFIG_NAME
) -> Settings:
    env = {} if env is None else env
    main = data.get("newsletter", {})
    sched = data.get("schedule", {})
    sg = data.get("sendgrid", {})
    outbox = data.get("outbox", {})

    def bad(key: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {message}")

    tz_name = main.get("timezone", "UTC")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad("newsletter.timezone", f"unknown time zone {tz_name!r}") from None

    days = tuple(str(d).lower()[:3] for d in sched.get("days", ["tue", "fri"]))
    for day in days:
        if day not in DAYS:
            raise bad("schedule.days", f"{day!r} is not a weekday (use mon, tue, ...)")
    try:
        hour, minute = (int(x) for x in str(sched.get("time", "09:00")).split(":"))
        at = time(hour, minute)
    except ValueError:
        raise bad("schedule.time", f"{sched.get('time')!r} is not HH:MM") from None
    per_issue = int(sched.get("articles_per_issue", 1))
    if per_issue < 1:
        raise bad("schedule.articles_per_issue", "must be at least 1")

    provider = env.get("NEWSLETTER_PROVIDER") or main.get("provider", "outbox")
    if provider not in PROVIDERS:
        raise bad("newsletter.provider", f"{provider!r} is not one of {', '.join(PROVIDERS)}")

    database_url = env.get("NEWSLETTER_DATABASE_URL") or main.get(
        "database_url", "sqlite:///newsletter.db"
    )
    database_url = _anchor_sqlite(database_url, root)
    base_url = (
        env.get("NEWSLETTER_BASE_URL") or main.get("base_url", "http://127.0.0.1:8000")
    ).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise bad("newsletter.base_url", f"{base_url!r} must start with https:// (or http://)")

    editor_email = str(data.get("editor", {}).get("email", "") or "").strip()
    if editor_email and "@" not in editor_email:
        raise bad("editor.email", f"{editor_email!r} is not an email address")

    return Settings(
        root=root,
        editor_email=editor_email,
        name=main.get("name", "Newsletter"),
        from_email=main.get("from_email", "editor@example.com"),
        from_name=main.get("from_name", main.get("name", "Newsletter")),
        base_url=base_url,
        postal_address=main.get("postal_address", ""),
        language=main.get("language", "en"),
        timezone=tz,
        database_url=database_url,
        provider=provider,
        schedule=Schedule(
            days=days,
            at=at,
            articles_per_issue=per_issue,
            grace=timedelta(hours=float(sched.get("grace_hours", 6))),
            lease=timedelta(seconds=float(sched.get("lease_seconds", 60))),
            heartbeat=timedelta(seconds=float(sched.get("heartbeat_seconds", 10))),
        ),
        outbox_path=root / outbox.get("path", "outbox"),
        sendgrid=SendGridSettings(
            api_host=(
                env.get("SENDGRID_API_HOST") or sg.get("api_host", "https://api.sendgrid.com")
            ),
            timeout_seconds=float(sg.get("timeout_seconds", 15)),
            batch_size=min(int(sg.get("batch_size", 1000)), 1000),
            categories=tuple(sg.get("categories", ["newsletter"])),
            max_retries=int(sg.get("max_retries", 5)),
            max_failed_batches=int(sg.get("max_failed_batches", 3)),
            concurrency=max(1, int(sg.get("concurrency", 4))),
        ),
        resend_uncertain=bool(data.get("delivery", {}).get("resend_uncertain", False)),
        claim_timeout=timedelta(
            seconds=float(data.get("delivery", {}).get("claim_timeout_seconds", 120))
        ),
        collapse_is_error=bool(data.get("check", {}).get("collapse_is_error", False)),
    )


def _anchor_sqlite(url: str, root: Path) -> str:
    """Make a relative SQLite path relative to the config folder, not the current directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(root / url[len(prefix) :])
    return url


def write_default_config(folder: Path) -> Path:
    """Create newsletter.toml (never overwriting one) and the folders beside it."""
    path = folder / CONFIG_NAME
    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting it")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(DEFAULT_TOML, encoding="utf-8")
    (folder / "issues").mkdir(exist_ok=True)
    (folder / "outbox").mkdir(exist_ok=True)
    return path
