"""The tables of how an issue is sent, whatever the provider ([delivery], [sending]: paced
sending) and of the two providers that need no server of ours ([outbox], [sendgrid])."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from newsletter.settings.schema.base import Section


class DeliverySection(Section):
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


class OutboxSection(Section):
    """[outbox]: the provider that writes .eml files."""

    path: str = Field("outbox", description="Folder of the .eml files, relative to this file.")


class SendGridSection(Section):
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


class SendingSection(Section):
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
