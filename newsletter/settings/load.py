"""Find and read `newsletter.toml`, apply the `NEWSLETTER_*` environment overrides, and build
the `values` records from the validated `schema`; secrets come from the environment only.

pydantic (through `schema`) is imported inside the functions that need it, so importing
`newsletter.settings` for its records (every module does) stays light: `newsletter --help`
never loads it.
"""

from __future__ import annotations

import logging
import os
import tomllib
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from newsletter.exceptions import ConfigError
from newsletter.readertime import ReaderTime, parse_deliver_at
from newsletter.settings.values import (
    Approval,
    BouncesSettings,
    DeliverySettings,
    DkimSettings,
    Feed,
    Schedule,
    SendGridSettings,
    SendingSettings,
    Settings,
    SMTPSettings,
    WelcomeSettings,
)

if TYPE_CHECKING:
    from newsletter.settings.schema import SettingsFile

log = logging.getLogger(__name__)

CONFIG_NAME = "newsletter.toml"

# Environment variables that override one setting of the file: name -> (table, key).
ENV_OVERRIDES = {
    "NEWSLETTER_PROVIDER": ("newsletter", "provider"),
    "NEWSLETTER_DATABASE_URL": ("newsletter", "database_url"),
    "NEWSLETTER_BASE_URL": ("newsletter", "base_url"),
    "SENDGRID_API_HOST": ("sendgrid", "api_host"),
}

# Warnings already given by this process: the scheduler reloads the file at its heartbeat.
_warned: set[str] = set()


def secret(name: str) -> str | None:
    """Read a secret from the environment; secrets have no place in files or output.
    Surrounding whitespace is dropped (a CRLF `.env` file leaves a CR at the end); what is
    left must be printable ASCII without spaces, or the error names the variable, never
    the value (an illegal character would otherwise surface inside an HTTP header error)."""
    value = (os.environ.get(name) or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ConfigError(
            f"{name} holds a character a key cannot have (a space, a control character or a "
            "non-ASCII character): set it again, copied exactly"
        )
    return value


def find_config(start: Path | None = None) -> Path | None:
    """The nearest `newsletter.toml` in `start` or its parents."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """The file's tables, or ConfigError naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Load settings from `path` (or the nearest newsletter.toml) and the environment."""
    env = dict(os.environ if env is None else env)
    path = path or find_config()
    if path is None:
        raise ConfigError(
            f"no {CONFIG_NAME} here or in any parent folder: run 'newsletter init' first"
        )
    return settings_from_dict(read_toml(path), path.parent.resolve(), env, source=str(path))


def settings_from_dict(
    data: dict[str, Any],
    root: Path,
    env: dict[str, str] | None = None,
    source: str = CONFIG_NAME,
) -> Settings:
    """Settings from the file's parsed tables; a wrong value raises ConfigError naming it."""
    from newsletter.settings.schema import move_keys, parse

    data, warnings = move_keys(data, source)
    for warning in warnings:
        if warning not in _warned:
            _warned.add(warning)
            log.warning(warning)
    data, overridden = _with_environment(data, {} if env is None else env)
    return to_settings(parse(data, source, overridden), root)


def _with_environment(
    data: dict[str, Any], env: dict[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """The tables with ENV_OVERRIDES applied, and which variable set which (table, key)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    overridden: dict[tuple[str, str], str] = {}
    for name, (table, key) in ENV_OVERRIDES.items():
        if env.get(name):
            section = data.setdefault(table, {})
            if isinstance(section, dict):
                section[key] = env[name]
                overridden[(table, key)] = name
    return data, overridden


def anchor_sqlite(url: str, root: Path) -> str:
    """Make a relative SQLite path relative to the config folder, not the current directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(root / url[len(prefix) :])
    return url


def to_settings(file: SettingsFile, root: Path) -> Settings:
    """The records the code reads, from a validated file (zones, durations, paths resolved)."""
    from newsletter.contract import contract_from_lists
    from newsletter.resources import builtin_templates

    main, sched, sg, sending = file.newsletter, file.schedule, file.sendgrid, file.delivery
    hour, minute = (int(x) for x in sched.time.split(":"))
    return Settings(
        root=root,
        name=main.name,
        from_email=main.from_email,
        from_name=main.from_name or main.name,
        base_url=main.base_url,
        postal_address=main.postal_address,
        language=main.language,
        timezone=ZoneInfo(main.timezone),
        database_url=anchor_sqlite(main.database_url, root),
        provider=main.provider,
        schedule=Schedule(
            days=tuple(sched.days),
            at=time(hour, minute),
            articles_per_issue=sched.articles_per_issue,
            grace=timedelta(hours=sched.grace_hours),
            lease=timedelta(seconds=sched.lease_seconds),
            heartbeat=timedelta(seconds=sched.heartbeat_seconds),
        ),
        delivery=DeliverySettings(
            batch_size=sending.batch_size,
            concurrency=sending.concurrency,
            max_retries=sending.max_retries,
            max_failed_batches=sending.max_failed_batches,
            backoff_base=timedelta(seconds=sending.backoff_seconds),
            backoff_cap=timedelta(seconds=sending.backoff_cap_seconds),
            resend_uncertain=sending.resend_uncertain,
            claim_timeout=timedelta(seconds=sending.claim_timeout_seconds),
        ),
        outbox_path=root / file.outbox.path,
        sendgrid=SendGridSettings(
            api_host=sg.api_host,
            timeout_seconds=sg.timeout_seconds,
            categories=tuple(sg.categories),
        ),
        collapse_is_error=file.check.collapse_is_error,
        spoiler_leak=file.check.spoiler_leak,
        layout=file.issue.layout,
        subject_template=file.issue.subject_template,
        approval=Approval(
            required=file.issue.approval == "required",
            deadline=timedelta(minutes=file.issue.approval_deadline_minutes),
            allow_self=file.issue.allow_self_approval,
        ),
        deliver_at=(
            ReaderTime(at=parse_deliver_at(file.issue.deliver_at), zone=ZoneInfo(main.timezone))
            if file.issue.deliver_at.strip()
            else None
        ),
        feeds=tuple(
            Feed(
                url=feed.url,
                every=timedelta(minutes=feed.every_minutes),
                layout=feed.layout,
                backlog=feed.backlog,
                timeout_seconds=feed.timeout_seconds,
            )
            for feed in file.feeds
        ),
        contract=contract_from_lists(
            file.articles.sections, file.articles.required, file.articles.spoiler_free
        ),
        editor_email=file.editor.email,
        forwarded_allow_ips=file.web.forwarded_allow_ips,
        dkim=DkimSettings(
            selector=file.dkim.selector.strip(),
            domain=file.dkim.domain.strip().lower(),
            private_key_file=root / file.dkim.private_key_file
            if file.dkim.private_key_file
            else None,
        ),
        smtp=SMTPSettings(
            host=file.smtp.host,
            port=file.smtp.port,
            security=file.smtp.security,
            username=file.smtp.username,
            connections=file.smtp.connections,
            messages_per_connection=file.smtp.messages_per_connection,
            timeout_seconds=file.smtp.timeout_seconds,
            max_per_second=file.smtp.max_per_second,
            bounce_address=file.smtp.bounce_address,
            ca_file=str(root / Path(file.smtp.ca_file).expanduser()) if file.smtp.ca_file else "",
            max_retries=sending.max_retries,
        ),
        sending=SendingSettings(
            max_per_hour=file.sending.max_per_hour,
            max_per_day=file.sending.max_per_day,
            warmup=file.sending.warmup_plan(),
        ),
        bounces=BouncesSettings(
            mailbox=root / Path(file.bounces.mailbox).expanduser()
            if file.bounces.mailbox
            else None,
            imap_host=file.bounces.imap_host,
            imap_port=file.bounces.imap_port,
            imap_user=file.bounces.imap_user,
            imap_folder=file.bounces.imap_folder,
            every_minutes=file.bounces.every_minutes,
        ),
        welcome=WelcomeSettings(enabled=file.welcome.enabled),
        segment=file.issue.segment.strip(),
        builtin_templates=builtin_templates(),
    )


def write_default_config(folder: Path) -> Path:
    """Create newsletter.toml (never overwriting one) and the folders beside it."""
    from newsletter.settings.schema import default_toml

    path = folder / CONFIG_NAME
    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting it")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(default_toml(), encoding="utf-8")
    (folder / "issues").mkdir(exist_ok=True)
    (folder / "outbox").mkdir(exist_ok=True)
    return path
