"""What a local SendGrid server is told at start: one frozen record for both kinds of server,
so the command line, the child-process helper and the tests build it the same way."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

MAX_BODY_BYTES = 30 * 1024 * 1024  # SendGrid's limit on a whole mail send body


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Where to listen and which key to accept (both servers); what to keep and where to post
    signed events (the contract server only: a sink records nothing and signs nothing)."""

    api_key: str = "SG.test-key"
    host: str = "127.0.0.1"
    port: int = 0  # 0 = an ephemeral port, read back from `server.port`
    max_body_bytes: int = MAX_BODY_BYTES
    log_requests: bool = False  # request line + status on stderr; never headers
    record: bool = True  # keep each delivered message (False: counters only)
    event_webhook_url: str | None = None
    event_private_key: ec.EllipticCurvePrivateKey | bytes | str | None = None

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must not be empty")

    def __repr__(self) -> str:  # never shows the key
        return f"ServerConfig(host={self.host!r}, port={self.port}, record={self.record})"
