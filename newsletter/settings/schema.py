"""The schema of `newsletter.toml`: every setting once, with its type, bounds, default and
description.

This is the one place defaults are declared. `load` validates a file against it and builds the
records of `values` from it, and the commented `newsletter.toml` that `newsletter init` writes is
generated from it (the field descriptions become the comments), so the file, the defaults and
the checks cannot disagree. Keys that moved to another table still read, through `MOVED`.

Why pydantic (v2) rather than msgspec or attrs+cattrs: its errors carry the field's location and
the expected type in a structured form we turn into one line naming the file and the setting,
fields carry descriptions for the generated file, and validators (time zones, times of day,
weekdays, addresses) are one function each. msgspec is faster, but speed does not matter for one
small file read once, and it has no per-field descriptions. Only this module imports pydantic,
and only loading settings imports this module, so `newsletter --help` stays quick.
"""

from __future__ import annotations

import json
import textwrap
from datetime import time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from newsletter.addresses import EmailNotValidError, normalize_address
from newsletter.contract import DEFAULT_CONTRACT, normalize_heading
from newsletter.exceptions import ConfigError

# The sample newsletter's made-up address: the default, so a new folder runs as it is, and
# what `check` warns about, so nobody sends with it.
EXAMPLE_POSTAL_ADDRESS = "Endings Explained, 1 Example Street, 75001 Paris, France"

HEADER = """\
newsletter settings. Secrets never go here: set SENDGRID_API_KEY, SMTP_PASSWORD,
BOUNCES_PASSWORD, DKIM_PRIVATE_KEY and NEWSLETTER_SECRET_KEY in the environment.
NEWSLETTER_DATABASE_URL, NEWSLETTER_PROVIDER, NEWSLETTER_BASE_URL and SENDGRID_API_HOST
override the values below."""

# The workspace writes this into the file: bounded, so a form cannot write a 400-digit number.
MAX_ARTICLES_PER_ISSUE = 50

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAY_NAMES = {
    full: full[:3]
    for full in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
}


ADDRESS_ERROR = "not_an_address"  # its message shows the value itself


def _address(value: str) -> str:
    """The subscribers' address rules (newsletter.addresses), as a one-line schema error."""
    try:
        return normalize_address(value)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        raise PydanticCustomError(
            ADDRESS_ERROR,
            "{value} is not an email address ({reason})",
            {
                "value": json.dumps(value, ensure_ascii=False),
                "reason": reason[:1].lower() + reason[1:],
            },
        ) from None


class _Section(BaseModel):
    """One `[table]` of the file: frozen, keyword-only, unknown keys refused, no coercion from
    strings (a quoted number in TOML is a mistake worth naming)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class NewsletterSection(_Section):
    """[newsletter]: who sends, to which address links point, where the data lives."""

    name: str = Field("Endings Explained", description="The newsletter's name.")
    from_email: str = Field(
        "editor@example.com",
        description="The sender address (held to the same rules as a subscriber's).",
    )
    from_name: str = Field("", description="The sender's display name; empty: the name above.")
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public address of `newsletter serve`: unsubscribe and "
        "view-in-browser links point here.",
    )
    postal_address: str = Field(
        EXAMPLE_POSTAL_ADDRESS,
        description="CAN-SPAM: a physical postal address in every email.",
    )
    language: str = Field("en", description="Language of the emails and pages (BCP 47).")
    timezone: str = Field(
        "Europe/Paris", description="IANA time zone of the schedule and of dates shown."
    )
    database_url: str = Field(
        "sqlite:///newsletter.db",
        description="Any SQLAlchemy URL; relative SQLite paths are relative to this file.",
    )
    provider: Literal["outbox", "sendgrid", "smtp"] = Field(
        "outbox",
        description='"outbox" writes .eml files and needs no account; '
        '"sendgrid" needs SENDGRID_API_KEY; "smtp" sends through the [smtp] server.',
    )

    @field_validator("from_email")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _address(value)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http://)")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as Europe/Paris") from None
        return value


class EditorSection(_Section):
    """[editor]: who is told when the queue needs a person."""

    email: str = Field(
        "",
        description="Who is emailed (through the provider) when an article is held because "
        "its check found errors; the next article goes out meanwhile. Empty: a log line only.",
    )

    @field_validator("email")
    @classmethod
    def _editor(cls, value: str) -> str:
        return _address(value) if value.strip() else ""


class ScheduleSection(_Section):
    """[schedule]: publication cadence, in the time zone above."""

    days: tuple[Weekday, ...] = Field(
        ("tue", "fri"), strict=False, description="Weekdays an issue goes out."
    )
    time: str = Field("09:00", description="Time of day an issue goes out (HH:MM).")
    articles_per_issue: int = Field(
        1, ge=1, le=MAX_ARTICLES_PER_ISSUE, description="Articles in one issue."
    )
    grace_hours: float = Field(
        6,
        ge=0,
        le=24 * 31,
        description="A tick missed while the scheduler was down still goes out within this "
        "many hours; after that the issue waits for the editor.",
    )
    lease_seconds: float = Field(
        60,
        gt=0,
        le=24 * 3600,
        description="Two schedulers on one database never both send: one holds a lease for "
        "this long, renewed while it lives; if it dies, the other takes over once the lease "
        "runs out.",
    )
    heartbeat_seconds: float = Field(
        10, gt=0, le=3600, description="How often the lease is renewed and due work looked for."
    )

    @field_validator("days", mode="before")
    @classmethod
    def _short_days(cls, value: Any) -> Any:
        """Accept "Tuesday" or "TUE" for "tue"."""
        if isinstance(value, list):
            return tuple(
                _DAY_NAMES.get(d.lower(), d.lower()) if isinstance(d, str) else d for d in value
            )
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> Any:
        """HH:MM as a string; a TOML local time (09:00:00, unquoted) is taken too."""
        if isinstance(value, time):
            return value.strftime("%H:%M")
        if isinstance(value, str):
            try:
                hour, minute = (int(x) for x in value.split(":"))
                time(hour, minute)
            except ValueError:
                raise ValueError("expected a time of day as HH:MM, e.g. 09:00") from None
        return value


class DeliverySection(_Section):
    """[delivery]: how an issue is sent, whatever the provider; what happens to a batch whose
    fate is unknown."""

    batch_size: int = Field(
        1000,
        ge=1,
        le=1000,
        description="Recipients per batch, whatever the provider (one request to it; SendGrid "
        "takes 1000 at most).",
    )
    concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Batches in flight at once for one issue (each its own batch in the "
        "delivery log).",
    )
    max_retries: int = Field(
        5, ge=0, le=100, description="Retries of a request that failed transiently."
    )
    max_failed_batches: int = Field(
        3, ge=1, le=10_000, description="Failed batches after which the issue is paused."
    )
    backoff_seconds: float = Field(
        0.5,
        ge=0,
        le=3600,
        description="The first wait before a retry; each further retry waits up to twice as "
        "long (with jitter), up to backoff_cap_seconds.",
    )
    backoff_cap_seconds: float = Field(
        60, ge=0, le=3600, description="The longest wait between two retries."
    )
    resend_uncertain: bool = Field(
        False,
        description="A batch in flight when the sender crashed may or may not have gone out. "
        'false: hold those subscribers as "uncertain" for provider events or the editor; '
        "true: resend them (for a list that prefers a rare duplicate to a gap).",
    )
    claim_timeout_seconds: float = Field(
        120,
        gt=0,
        le=7 * 24 * 3600,
        description="A batch claimed by a sender on another machine that has been in flight "
        "this long is taken as abandoned (its sender died) and becomes uncertain. Keep it "
        "above the request timeout.",
    )


class CheckSection(_Section):
    """[check]: what `newsletter check` and `run` refuse."""

    collapse_is_error: bool = Field(
        False,
        description="An issue too large for Gmail (about 102 KB of HTML) has its later "
        "articles shortened to title, teaser and a link. true: refuse to send it instead.",
    )
    spoiler_leak: Literal["warning", "error"] = Field(
        "warning",
        description="A sentence readers see before they choose to read the ending (subject, "
        "preheader, teaser, card, the spoiler-free sections) that shares a distinctive phrase "
        'with a spoiler section of its article: "warning" reports it, "error" also refuses to '
        "send the issue.",
    )


class IssueSection(_Section):
    """[issue]: how an issue is laid out and what its subject says."""

    layout: Literal["full", "digest"] = Field(
        "full",
        description='"full": the article in the email, its ending after a spoiler divider; '
        '"digest": each article as a card (title, year, rating, recap teaser) with a "Read the '
        'ending" button to its page on the web edition, and no spoiler text in the email. An '
        "issue of several articles is a digest. One issue can be made otherwise: `run --layout`, "
        "or the next issue's layout on the queue page of the editors' workspace.",
    )
    subject_template: str = Field(
        "{titles}",
        description="Subject of an issue of several articles: {lead} (the first title), "
        "{count} (articles), {more} (count - 1) and {titles}; shortened at a word to fit in 60 "
        "characters, titles first losing their 'Ending Explained' and their year. Built from "
        "titles only, so it never carries spoiler text.",
    )

    approval: Literal["none", "required"] = Field(
        "none",
        description='"required": an issue the scheduler prepares waits, awaiting approval, '
        "until an editor other than the one who queued its articles approves it (the "
        "workspace's issue page, or `newsletter approve ISSUE`); a rejection holds its articles "
        'in the queue with the reason. "none": issues go out at their slot unreviewed.',
    )
    approval_deadline_minutes: int = Field(
        60,
        ge=0,
        le=7 * 24 * 60,
        description="An issue still awaiting approval this many minutes before its slot "
        "alerts every editor (the workspace and an email).",
    )
    allow_self_approval: bool = Field(
        False,
        description="Let the editor who queued an issue's articles approve it (a team of one).",
    )
    segment: str = Field(
        "",
        description="Who gets each issue, as a segment: e.g. 'tag:films and not tag:paused', "
        "'joined<30d', 'opened<90d' (see the README). Empty: every active subscriber. "
        "`newsletter segment count` shows how many it matches.",
    )
    deliver_at: str = Field(
        "",
        description='"local 08:00": each reader\'s copy goes at 08:00 on their own clock (the '
        "subscriber's time zone, else the newsletter's `timezone`), in one wave per UTC "
        'instant the zones need; "" sends to every reader at once.',
    )

    @field_validator("deliver_at")
    @classmethod
    def _deliver_at(cls, value: str) -> str:
        if value.strip():
            from newsletter.readertime import parse_deliver_at

            parse_deliver_at(value)
        return value

    @field_validator("subject_template")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        from newsletter.subjects import check_template

        check_template(value)
        return value


class ArticlesSection(_Section):
    """[articles]: the article contract, which `queue add`, `check` and every send hold
    articles to, and which decides what the email may show."""

    sections: tuple[str, ...] = Field(
        DEFAULT_CONTRACT.headings,
        strict=False,
        description="The section headings of an article, in order.",
    )
    required: tuple[str, ...] = Field(
        tuple(rule.heading for rule in DEFAULT_CONTRACT.sections if rule.required),
        strict=False,
        description="The sections an article must have.",
    )
    spoiler_free: tuple[str, ...] = Field(
        tuple(rule.heading for rule in DEFAULT_CONTRACT.sections if not rule.spoiler),
        strict=False,
        description="The sections that do not give the ending away: the email may show them "
        "and the teaser is cut from the first. Every other section, and any heading not "
        "listed, stays behind the spoiler divider or the reveal.",
    )

    @field_validator("sections")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for heading in value:
            key = normalize_heading(heading)
            if not key:
                raise ValueError("a heading is empty")
            if key in seen:
                raise ValueError(f"{heading!r} is listed twice")
            seen.add(key)
        return value

    @field_validator("required", "spoiler_free")
    @classmethod
    def _listed(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        known = {normalize_heading(h) for h in info.data.get("sections", ())}
        for heading in value:
            if normalize_heading(heading) not in known:
                raise ValueError(f"{heading!r} is not one of [articles] sections")
        if info.field_name == "spoiler_free" and not value:
            raise ValueError("name at least one section (the recap the teaser comes from)")
        return value


class OutboxSection(_Section):
    """[outbox]: the provider that writes .eml files."""

    path: str = Field("outbox", description="Folder of the .eml files, relative to this file.")


class SendGridSection(_Section):
    """[sendgrid]: the SendGrid provider (SENDGRID_API_KEY in the environment)."""

    api_host: str = Field(
        "https://api.sendgrid.com",
        description="SENDGRID_API_HOST overrides the API address (EU accounts, the local test "
        "server).",
    )
    timeout_seconds: float = Field(15, gt=0, le=600, description="Timeout of one API request.")
    categories: tuple[str, ...] = Field(
        ("newsletter",),
        strict=False,  # a TOML array is a list
        description="SendGrid categories every email is tagged with.",
    )


class DkimSection(_Section):
    """[dkim]: signing with our own DKIM key (the provider's own signing needs none of it)."""

    selector: str = Field(
        "",
        description="The DKIM selector: the key is published at "
        "<selector>._domainkey.<domain>. Empty: no signing of our own (SendGrid signs with "
        "its domain-authentication keys).",
    )
    domain: str = Field("", description="The d= domain of the signature; empty: the From domain.")
    private_key_file: str = Field(
        "",
        description="The PEM private key, relative to this file; DKIM_PRIVATE_KEY in the "
        "environment takes its place.",
    )


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class SMTPSection(_Section):
    """[smtp]: any SMTP server or provider (SES, Mailgun, Postmark, a local Postfix);
    SMTP_PASSWORD in the environment."""

    host: str = Field("", description='The SMTP server; needed with provider = "smtp".')
    port: int = Field(
        587, ge=1, le=65535, description="587 for STARTTLS, 465 for TLS, 25 for a local relay."
    )
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description='"starttls" (port 587), "tls" (port 465) or "none" (only for a server on '
        "127.0.0.1/localhost: the password and every message would travel in clear).",
    )
    username: str = Field(
        "", description="The login (the password is SMTP_PASSWORD); empty: no login."
    )
    connections: int = Field(
        4, ge=1, le=64, description="Persistent connections used in parallel for one batch."
    )
    messages_per_connection: int = Field(
        100, ge=1, le=100_000, description="A connection is opened again after this many."
    )
    timeout_seconds: float = Field(
        30, gt=0, le=600, description="How long one SMTP command may wait for its answer."
    )
    max_per_second: float = Field(
        0, ge=0, le=100_000, description="At most this many messages a second; 0: no limit."
    )
    bounce_address: str = Field(
        "",
        description="The envelope sender, made per reader (VERP): bounces@example.com sends "
        "as bounces+<issue>-<reader>@example.com, so a bounce names both. Empty: the From "
        "address, and bounces are matched by the addresses they name.",
    )
    ca_file: str = Field(
        "",
        description="A PEM certificate (or its CA) to trust for a private server, relative "
        "to this file; empty: the system's CAs.",
    )

    @field_validator("security")
    @classmethod
    def _clear_text_locally(cls, value: str, info: ValidationInfo) -> str:
        host = str(info.data.get("host", "")).strip("[]").lower()
        if value == "none" and host and host not in LOOPBACK_HOSTS:
            raise ValueError(
                '"none" sends the password and every message in clear: allowed only for '
                f"127.0.0.1/localhost, not {host!r}"
            )
        return value

    @field_validator("bounce_address")
    @classmethod
    def _bounces(cls, value: str) -> str:
        if not value.strip():
            return ""
        address = _address(value)
        if "+" in address.partition("@")[0]:
            raise ValueError("must have no '+' of its own (VERP adds +<issue>-<reader>)")
        return address


class SendingSection(_Section):
    """[sending]: paced sending, for a new sending domain or a provider's quota: a send stops
    at a cap with the rest pending and goes on in the next window."""

    max_per_hour: int = Field(
        0,
        ge=0,
        description="Messages per clock hour, over every issue (0: no limit).",
    )
    max_per_day: int = Field(
        0,
        ge=0,
        description="Messages per calendar day in [newsletter] timezone (0: no limit).",
    )
    warmup: str = Field(
        "",
        description="A warm-up plan for a new domain, daily caps from the first paced send on, "
        'e.g. "50,100,500,1000,5000" (day 1: 50, day 2: 100, ...; then max_per_day). '
        "Empty: no warm-up.",
    )

    @field_validator("warmup")
    @classmethod
    def _plan(cls, value: str) -> str:
        items = [p.strip() for p in value.split(",")] if value.strip() else []
        for n, item in enumerate(items):
            if not item.isdigit() or int(item) == 0:
                raise PydanticCustomError(
                    "warmup",
                    f"item {n + 1} ({item!r}) is not a positive whole number "
                    '(e.g. "50,100,500,1000,5000")',
                )
        return ",".join(items)

    def warmup_plan(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.warmup.split(",")) if self.warmup else ()


class BouncesSection(_Section):
    """[bounces]: the mailbox bounces and complaints come back to (`newsletter bounces`);
    BOUNCES_PASSWORD in the environment for IMAP."""

    mailbox: str = Field("", description="A Maildir folder or an mbox file, relative to this file.")
    imap_host: str = Field("", description="Or an IMAP server (over TLS), instead of mailbox.")
    imap_port: int = Field(993, ge=1, le=65535, description="The IMAP server's TLS port.")
    imap_user: str = Field("", description="The IMAP login (the password is BOUNCES_PASSWORD).")
    imap_folder: str = Field("INBOX", description="The IMAP folder the reports arrive in.")
    every_minutes: int = Field(
        0,
        ge=0,
        le=7 * 24 * 60,
        description="`newsletter scheduler` reads the mailbox this often; 0: only when "
        "`newsletter bounces` is run.",
    )

    @field_validator("imap_host")
    @classmethod
    def _one_source(cls, value: str, info: ValidationInfo) -> str:
        if value.strip() and info.data.get("mailbox"):
            raise ValueError("set mailbox or imap_host, not both")
        return value.strip()


class WelcomeSection(_Section):
    """[welcome]: the email a new reader gets once."""

    enabled: bool = Field(
        False,
        description="Send a welcome email (templates/welcome.html and welcome.txt) once to "
        "each reader who confirms their sign-up, or is imported with `subscribers import "
        "--welcome`; it shows the latest sent issue as cards, never its ending.",
    )


class WebSection(_Section):
    """[web]: `newsletter serve` behind a reverse proxy."""

    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Addresses of the reverse proxies whose X-Forwarded-For and "
        'X-Forwarded-Proto are believed (comma-separated addresses or networks, "*" for '
        "any): the client address the sign-in and sign-up limits count. A request from "
        "anywhere else is counted by its own address.",
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: str) -> str:
        import ipaddress

        for item in (part.strip() for part in value.split(",")):
            if item in ("", "*") or item.startswith("unix:"):
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value


class FeedSection(_Section):
    """[[feeds]]: a site's feed (RSS 2.0, Atom or JSON Feed) whose new entries are queued as
    articles, each once (by its id), fitted to the article contract or held with its errors."""

    url: str = Field(description="The feed's address (http:// or https://).")
    every_minutes: int = Field(
        60, ge=1, le=7 * 24 * 60, description="How often the scheduler fetches it."
    )
    layout: Literal["", "full", "digest"] = Field(
        "",
        description='The layout of an issue made of this feed\'s entries ("": automatic).',
    )
    backlog: int = Field(
        5,
        ge=0,
        le=1000,
        description="Entries taken from the feed's first fetch, newest first; the older "
        "ones are remembered as already published.",
    )
    timeout_seconds: float = Field(
        20, gt=0, le=300, description="How long one fetch may take.", strict=False
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) > 2000:
            raise ValueError("must be an http:// or https:// address")
        return value


# `init` writes the list of feeds as a commented-out example (it has no default entry).
FEEDS_EXAMPLE = {"url": "https://example.com/feed/"}


def _feeds_example() -> list[str]:
    """Every [[feeds]] key with its description, commented out: there is no default feed."""
    lines = _comment("[[feeds]]: " + (FeedSection.__doc__ or "").split(":", 1)[1].strip())
    lines += ["# [[feeds]]"]
    example = FeedSection.model_validate(FEEDS_EXAMPLE)
    for key, spec in FeedSection.model_fields.items():
        lines += ["# " + line for line in _comment(spec.description or "")]
        lines += [f"# {line}" for line in _setting(key, getattr(example, key))]
    return lines


class SettingsFile(_Section):
    """The whole file. Every table is optional; a missing key takes the default above."""

    newsletter: NewsletterSection = NewsletterSection()
    editor: EditorSection = EditorSection()
    schedule: ScheduleSection = ScheduleSection()
    delivery: DeliverySection = DeliverySection()
    check: CheckSection = CheckSection()
    issue: IssueSection = IssueSection()
    articles: ArticlesSection = ArticlesSection()
    outbox: OutboxSection = OutboxSection()
    sendgrid: SendGridSection = SendGridSection()
    dkim: DkimSection = DkimSection()
    smtp: SMTPSection = SMTPSection()
    bounces: BouncesSection = BouncesSection()
    sending: SendingSection = SendingSection()
    web: WebSection = WebSection()
    welcome: WelcomeSection = WelcomeSection()
    feeds: tuple[FeedSection, ...] = Field((), strict=False)  # last: the commented example


# -- loading ---------------------------------------------------------------------------------
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
}


def _one_line(error: ValidationError, source: str, overridden: dict[tuple[str, str], str]) -> str:
    """The first problem as `file: [table] key: what was expected (got ...)`."""
    problems = error.errors(include_url=False)
    first = problems[0]
    loc = [str(part) for part in first["loc"]]
    table, key = (loc + ["", ""])[:2]
    where = f"[{table}] {key}".strip() if key else f"[{table}]"
    if table == "feeds" and key.isdigit():  # an array of tables: [[feeds]] (item n) key
        loc = loc[2:]
        where = f"[[feeds]] (item {int(key) + 1})" + (f" {loc[0]}" if loc else "")
        key = loc[0] if loc else ""
        if first["type"] == "extra_forbidden":
            return f"{source}: {where}: unknown setting; [[feeds]] has " + ", ".join(
                FeedSection.model_fields
            )
    elif len(loc) > 2:
        where += f" (item {int(loc[2]) + 1})" if loc[2].isdigit() else f".{'.'.join(loc[2:])}"
    kind = first["type"]
    if kind == "extra_forbidden":
        what = "unknown setting" if key else "unknown table"
        valid = _known(table, key)
        return f"{source}: {where}: {what}{valid}"
    if kind in _EXPECTED:
        what = f"expected {_EXPECTED[kind]}, got {_toml(first['input'])}"
    else:
        what = first["msg"].removeprefix("Value error, ")
        what = what[0].lower() + what[1:]
        if kind != ADDRESS_ERROR and not isinstance(first.get("input"), dict):
            what += f" (got {_toml(first['input'])})"
    env = overridden.get((table, key))
    if env:
        where += f" (from {env})"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{source}: {where}: {what}{more}"


def _known(table: str, key: str) -> str:
    sections = SettingsFile.model_fields
    if not key:
        return f"; tables are {', '.join(f'[{name}]' for name in sections)}"
    model = sections[table].annotation
    return f"; [{table}] has {', '.join(model.model_fields)}"  # type: ignore[union-attr]


# Keys that moved: (old table, key) -> (new table, key). The old place still reads, with a
# warning naming the new one; both at once is refused (which one was meant is not ours to guess).
MOVED = {
    ("sendgrid", key): ("delivery", key)
    for key in ("batch_size", "concurrency", "max_retries", "max_failed_batches")
}


def move_keys(data: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """The file's tables with moved keys put where they now live, and one warning per key
    found at its old place. A key given at both places raises ConfigError naming both."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    warnings: list[str] = []
    for (old_table, old_key), (table, key) in MOVED.items():
        old = data.get(old_table)
        if not isinstance(old, dict) or old_key not in old:
            continue
        new = data.setdefault(table, {})
        if not isinstance(new, dict):
            continue  # the schema names a table that is not a table
        if key in new:
            raise ConfigError(
                f"{source}: [{old_table}] {old_key} and [{table}] {key} are both set: "
                f"[{old_table}] {old_key} is deprecated, keep only [{table}] {key}"
            )
        new[key] = old.pop(old_key)
        warnings.append(
            f"{source}: [{old_table}] {old_key} is deprecated: move it to [{table}] {key}"
        )
    return data, warnings


def parse(
    data: dict[str, Any], source: str, overridden: dict[tuple[str, str], str] | None = None
) -> SettingsFile:
    """Validate the file's tables (moved keys already in place, environment overrides applied,
    `overridden` naming which variable set which key) or raise ConfigError in one line."""
    try:
        file = SettingsFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source, overridden or {})) from None
    if file.newsletter.provider == "smtp" and not file.smtp.host.strip():
        env = (overridden or {}).get(("newsletter", "provider"))
        via = f" (from {env})" if env else ""
        raise ConfigError(f'{source}: [smtp] host: needed with provider = "smtp"{via}')
    if file.bounces.imap_host and not file.bounces.imap_user:
        raise ConfigError(f"{source}: [bounces] imap_user: needed with imap_host")
    return file


# -- the generated file ----------------------------------------------------------------------
def _toml(value: Any) -> str:
    """A default as TOML (strings, numbers, booleans and lists of them are all we have)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


WIDTH = 94  # the generated file's comments are wrapped at this width, and long arrays


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width=WIDTH, break_on_hyphens=False)]


def _setting(key: str, value: Any) -> list[str]:
    """`key = value`; an array too long for one line is written one entry a line, so an
    editor can reorder, add or drop an entry (e.g. a section of the article contract)."""
    line = f"{key} = {_toml(value)}"
    if not isinstance(value, list | tuple) or len(line) <= WIDTH:
        return [line]
    return [f"{key} = [", *(f"    {_toml(v)}," for v in value), "]"]


def default_toml() -> str:
    """The commented newsletter.toml that `init` writes: every setting at its default."""
    lines = [f"# {line}" if line else "#" for line in HEADER.splitlines()]
    for table, field in SettingsFile.model_fields.items():
        if table == "feeds":
            lines += ["", *_feeds_example()]
            continue
        section = field.annotation
        defaults = section()  # type: ignore[misc]
        lines += ["", f"[{table}]"]
        for key, spec in section.model_fields.items():  # type: ignore[union-attr]
            lines += _comment(spec.description or "")
            lines += _setting(key, getattr(defaults, key))
    return "\n".join(lines) + "\n"
