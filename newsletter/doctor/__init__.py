"""`newsletter doctor`: will the mail land? The sender's DNS (SPF, DKIM, DMARC, the From
domain) and the bulk-sender rules, checked before the first send, each finding with the
record to publish. One module per family of checks; `diagnose` runs them all."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.doctor.findings import Finding, Level, Report, VolumeRow
from newsletter.providers.dkim import KEY_VARIABLE, key_from_env

if TYPE_CHECKING:
    from newsletter.doctor.dkim import OwnKey
    from newsletter.settings import Settings
    from newsletter.store import Store

__all__ = ["SERVER_VARIABLE", "Finding", "Level", "Report", "VolumeRow", "diagnose"]


def __getattr__(name: str) -> str:
    """`SERVER_VARIABLE` on first use: the look-ups load dnspython (and httpx with it),
    about 0.2 s that `run` through the gate (which imports this package) never needs."""
    if name == "SERVER_VARIABLE":
        from newsletter.doctor.lookup import SERVER_VARIABLE

        return SERVER_VARIABLE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def own_key(settings: Settings, env: Mapping[str, str], domain: str) -> OwnKey | None:
    """Our own DKIM signing ([dkim] selector), or None when the provider signs."""
    from newsletter.doctor.dkim import OwnKey

    dkim = settings.dkim
    if not dkim.selector:
        return None
    signing = dkim.domain or domain
    text = key_from_env(env)
    if text:
        return OwnKey(selector=dkim.selector, domain=signing, pem=text.encode())
    if dkim.private_key_file is None:
        return OwnKey(
            selector=dkim.selector,
            domain=signing,
            pem=None,
            problem=f"no DKIM private key: set [dkim] private_key_file or {KEY_VARIABLE}",
        )
    path = Path(dkim.private_key_file)
    try:
        return OwnKey(selector=dkim.selector, domain=signing, pem=path.read_bytes())
    except OSError as exc:
        return OwnKey(
            selector=dkim.selector,
            domain=signing,
            pem=None,
            problem=f"[dkim] private_key_file {path}: cannot read: {exc.strerror}",
        )


def diagnose(
    settings: Settings,
    store: Store,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Report:
    """Every check, in the order a person fixes them."""
    from newsletter.doctor import dkim, dmarc, sender, spf, unsubscribe, volume
    from newsletter.doctor.lookup import Dns
    from newsletter.doctor.sending import sending_of
    from newsletter.records import SubscriberStatus, utcnow

    env = os.environ if env is None else env
    now = now or utcnow()
    domain = settings.from_email.rpartition("@")[2].strip().lower()
    sending = sending_of(settings)
    resolver = Dns.from_env(env)
    _forget_cached_answers()
    own = own_key(settings, env, domain)
    signing = own.domain if own else domain if sending.provider == "sendgrid" else None
    findings: list[Finding] = []
    findings += unsubscribe.check_base_url(settings.base_url, sending)
    findings += sender.check_from(resolver, domain, settings.from_email)
    if domain not in sender.FREE_MAIL:
        # SPF is the envelope sender's: SMTP's VERP bounce address may have its own domain.
        envelope = sending.envelope_domain or domain
        found_spf = spf.check_spf(resolver, envelope, sending)
        found_dkim = dkim.check_dkim(resolver, domain, sending, own)
        if sending.provider == "sendgrid" and own is None:
            authenticated = all(f.level == Level.OK for f in found_dkim)
            found_spf = spf.soften_for_sendgrid_return_path(found_spf, authenticated)
        findings += found_spf + found_dkim
        findings += dmarc.check_dmarc(
            resolver, domain, signing, spf_domain=envelope if envelope != domain else None
        )
    list_size = store.subscribers.count(SubscriberStatus.ACTIVE)
    since = now - volume.WINDOW
    complaints = store.subscribers.count(SubscriberStatus.COMPLAINED, since=since)
    sent = store.deliveries.sent_since(since)
    rate = volume.complaint_rate(complaints, sent)
    rows = volume.rules(findings, rate)
    findings += volume.volume_findings(list_size, complaints, sent, rows, now)
    return Report(
        checked_at=now,
        domain=domain,
        provider=sending.label,
        findings=tuple(findings),
        list_size=list_size,
        complaint_rate=rate,
        volume=rows,
        dns_trouble=resolver.troubled,
    )


def _forget_cached_answers() -> None:
    """checkdmarc keeps answers in a process-wide cache: a run must see today's DNS (the
    workspace's server process runs the doctor again and again)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from checkdmarc import utils

    utils.DNS_CACHE.clear()
