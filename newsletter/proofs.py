"""Proofs before the real send: one copy to the editor, or a whole issue validated by the
provider's sandbox (SendGrid answers 200 and delivers nothing). Neither touches the
delivery log, so a proof can never count as, or stand in for, a subscriber's delivery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.addresses import normalize_address
from newsletter.exceptions import CredentialsRefused, NewsletterError, ProviderError
from newsletter.links import stored_issue, unsubscribe_url
from newsletter.providers import OutgoingBatch, Provider
from newsletter.records import Recipient, Recipients, RenderedIssue
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.subscribers import clean_name

PROOF_TOKEN = "proof.not-a-subscriber"


def send_test(
    store: Store,
    settings: Settings,
    provider: Provider,
    issue_id: int,
    to: str,
    name: str = "Editor",
) -> None:
    """Send one copy of the issue to `to`, as a subscriber would get it."""
    rendered = stored_issue(settings, store.issues.get_issue(issue_id))
    send_proof(settings, provider, rendered, to, name, issue_id)


def send_proof(
    settings: Settings,
    provider: Provider,
    rendered: RenderedIssue,
    to: str,
    name: str = "Editor",
    issue_id: int = 0,
) -> None:
    """Send one copy of a rendered email (a stored issue, or a queued article's preview) to
    `to`, as a subscriber would get it, outside every delivery log."""
    try:
        address = normalize_address(to)
    except ValueError as exc:
        raise NewsletterError(f"--to {to!r} is not a valid address: {exc}") from None
    recipient = Recipient(0, address, clean_name(name), PROOF_TOKEN)
    provider.send(
        OutgoingBatch(
            issue_id=issue_id,
            batch=0,
            rendered=rendered,
            recipients=Recipients.of((recipient,)),
            unsubscribe_urls=(unsubscribe_url(settings, PROOF_TOKEN),),
            categories=("proof",),
        )
    )


@dataclass
class SandboxReport:
    requests: int = 0
    recipients: int = 0
    problems: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the validation stopped early (a refused key)


def sandbox_validate(
    store: Store,
    settings: Settings,
    provider: Provider,
    issue_id: int,
    progress_factory: Callable[[int, int], Callable[[int], None]] | None = None,
) -> SandboxReport:
    """Build every request of the issue exactly as the real send would, and have the
    provider validate them in sandbox mode. A refused key (or sender) stops at the first
    request, as a real send does: every other request would be refused the same way.
    `progress_factory(issue_id, subscribers)` makes the callback told each request's
    recipients."""
    rendered = stored_issue(settings, store.issues.get_issue(issue_id))
    report = SandboxReport()
    progress = progress_factory(issue_id, store.subscribers.count()) if progress_factory else None
    for number, recipients in enumerate(store.subscribers.active_batches(provider.max_batch), 1):
        batch = OutgoingBatch.of(
            settings, issue_id, number, rendered, tuple(recipients), sandbox=True
        )
        try:
            accepted = provider.send(batch)
        except CredentialsRefused as exc:
            report.requests += 1
            report.problems.append(f"request {number}: {exc}")
            report.stopped = str(exc)
            break
        except ProviderError as exc:
            details = getattr(exc, "details", [])
            report.problems.append(
                f"request {number}: {exc}" + (f": {'; '.join(details)}" if details else "")
            )
        else:
            report.problems.extend(
                f"subscriber {sid}: {why}" for sid, why in accepted.rejected.items()
            )
        report.requests += 1
        report.recipients += len(recipients)
        if progress:
            progress(len(recipients))
    return report
