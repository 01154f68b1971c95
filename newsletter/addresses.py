"""The one address check, shared by the subscriber list (sign-up, import, proofs, editors) and
the settings (from_email, the editor's address), so a sender address is held to the same rules
as a reader's."""

from __future__ import annotations

import ipaddress

from email_validator import EmailNotValidError, validate_email

__all__ = ["LOOPBACK_HOSTS", "EmailNotValidError", "is_local_host", "normalize_address"]

# The hosts a password or a message may reach in clear (a server on this machine): [smtp]
# security = "none" and an imap:// bounce mailbox are allowed only for these.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def normalize_address(raw: str) -> str:
    """Check an address and return it as stored.

    Decision: internationalised local parts (`δοκιμή@example.com`) are accepted. They need
    SMTPUTF8: the outbox writes them so (RFC 6532), and a provider that cannot take one
    (SendGrid) fails that one recipient with a reason while everyone else gets the issue. At
    sign-up, double opt-in means such an address only becomes active if the confirmation
    reached it. Every address whose local part is ASCII is stored all-ASCII (an
    internationalised domain in its IDNA form), so it never needs SMTPUTF8 anywhere.
    Raises EmailNotValidError with a readable reason."""
    if any(c in raw for c in "\r\n\x00"):
        raise EmailNotValidError("contains a line break or control character")
    checked = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=True)
    return checked.ascii_email or checked.normalized


def is_local_host(host: str) -> bool:
    """Whether nobody outside this network reaches `host`: localhost, a .localhost, .local or
    .internal name, a loopback, private, link-local or unspecified address. The doctor takes
    such a provider for a local test server and such a `base_url` for no public site; the
    pre-send check warns about a link to one."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (
        address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified
    )
