"""The one address check, shared by the subscriber list (sign-up, import, proofs, editors) and
the settings (from_email, the editor's address), so a sender address is held to the same rules
as a reader's."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

__all__ = ["LOOPBACK_HOSTS", "EmailNotValidError", "normalize_address"]

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
