"""Settings from `newsletter.toml`, overridden by `NEWSLETTER_*` environment variables.

Secrets (the SendGrid key, the link-signing key) are read from the environment only and are
never part of `Settings`' repr, so printing settings cannot leak them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from newsletter.exceptions import ConfigError

# The sample newsletter's made-up address: the default, so a new folder runs as it is, and
# what `check` warns about, so nobody sends with it.
EXAMPLE_POSTAL_ADDRESS = "Endings Explained, 1 Example Street, 75001 Paris, France"

if TYPE_CHECKING:
    from newsletter.contract import Contract

CONFIG_NAME = "newsletter.toml"

# Environment variables that override one setting of the file: name -> (table, key).
ENV_OVERRIDES = {
    "NEWSLETTER_PROVIDER": ("newsletter", "provider"),
    "NEWSLETTER_DATABASE_URL": ("newsletter", "database_url"),
    "NEWSLETTER_BASE_URL": ("newsletter", "base_url"),
    "SENDGRID_API_HOST": ("sendgrid", "api_host"),
}


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When issues go out (resolved from [schedule])."""

    days: tuple[str, ...]
    at: time
    articles_per_issue: int
    grace: timedelta
    # The sending lease: a scheduler that dies loses it after this long and a standby takes
    # over; the heartbeat renews it and looks for due work.
    lease: timedelta
    heartbeat: timedelta


@dataclass(frozen=True, kw_only=True)
class SendGridSettings:
    """The SendGrid provider's settings ([sendgrid])."""

    api_host: str
    timeout_seconds: float
    batch_size: int
    categories: tuple[str, ...]
    max_retries: int
    max_failed_batches: int
    concurrency: int


@dataclass(frozen=True, kw_only=True)
class DkimSettings:
    """Our own DKIM signing ([dkim]); an empty selector: the provider signs, or nobody does.
    The private key is DKIM_PRIVATE_KEY when set, else the file."""

    selector: str
    domain: str  # "" means the From domain
    private_key_file: Path | None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What the code reads: resolved from newsletter.toml by `newsletter.settings_file`, which
    holds every default (this class has none, so they cannot drift apart)."""

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
    outbox_path: Path
    sendgrid: SendGridSettings
    resend_uncertain: bool
    claim_timeout: timedelta
    collapse_is_error: bool
    # "warning" or "error": how `check` and every send treat a spoiler leak ([check]).
    spoiler_leak: str
    # "full" or "digest" for a one-article issue; several articles make a digest ([issue]).
    layout: str
    subject_template: str
    # The article contract ([articles]): sections, their order, which are spoilers.
    contract: Contract
    editor_email: str  # "" when nobody is to be emailed about held articles
    dkim: DkimSettings
    forwarded_allow_ips: str  # [web]: the proxies whose X-Forwarded-For uvicorn believes

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def templates_dir(self) -> Path:
        """The folder's own `templates/` when the editor has one, else the built-in set."""
        own = self.root / "templates"
        if own.is_dir():
            return own
        from newsletter.resources import builtin_templates

        return builtin_templates()


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
    """Settings from the file's parsed tables; a wrong value raises ConfigError naming it."""
    # pydantic is imported here, not at the top: `newsletter --help` never needs it.
    from newsletter.settings_file import parse, to_settings

    return to_settings(parse(data, {} if env is None else env, source), root)


def anchor_sqlite(url: str, root: Path) -> str:
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
    from newsletter.settings_file import default_toml

    path.write_text(default_toml(), encoding="utf-8")
    (folder / "issues").mkdir(exist_ok=True)
    (folder / "outbox").mkdir(exist_ok=True)
    return path
