"""The tables of who sends and what goes out when: [newsletter], [editor], [schedule],
[check], [issue] (layout, subject, approval, segment, reader time) and [articles] (the
article contract)."""

from __future__ import annotations

from datetime import time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator

from newsletter.contract import DEFAULT_CONTRACT, normalize_heading
from newsletter.settings.schema.base import Section, address
from newsletter.subjects import DEFAULT_SUBJECT_TEMPLATE

# The sample newsletter's made-up address: the default, so a new folder runs as it is, and
# what `check` warns about, so nobody sends with it.
EXAMPLE_POSTAL_ADDRESS = "Endings Explained, 1 Example Street, 75001 Paris, France"

# The workspace writes this into the file: bounded, so a form cannot write a 400-digit number.
MAX_ARTICLES_PER_ISSUE = 50

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAY_NAMES = {
    full: full[:3]
    for full in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
}


class NewsletterSection(Section):
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
        return address(value)

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


class EditorSection(Section):
    """[editor]: who is told when the queue needs a person."""

    email: str = Field(
        "",
        description="Who is emailed (through the provider) when an article is held because "
        "its check found errors; the next article goes out meanwhile. Empty: a log line only.",
    )

    @field_validator("email")
    @classmethod
    def _editor(cls, value: str) -> str:
        return address(value) if value.strip() else ""


class ScheduleSection(Section):
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


class CheckSection(Section):
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


class IssueSection(Section):
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
        DEFAULT_SUBJECT_TEMPLATE,
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


class ArticlesSection(Section):
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
