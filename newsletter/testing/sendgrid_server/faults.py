"""Fault injection: the answers SendGrid gives when things go wrong, armed by a test between
two requests so retry and stop logic can be exercised against real HTTP."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from newsletter.testing.sendgrid_server.rules import error, errors_body

RATE_LIMIT = 600  # value of X-RateLimit-Limit on injected 429s


@dataclass
class Faults:
    """Fault injection, mutable at runtime so a test can arm a fault between two requests.

    Each count is the number of upcoming authorised mail-send requests to affect (0 = off).
    A request consumes at most one fault, the first non-zero one in field order;
    ``drop_after_accept`` is only consumed by a request that is valid and accepted.
    """

    rate_limit: int = 0  # 429 + X-RateLimit-Limit/-Remaining: 0/-Reset (epoch s)
    rate_limit_reset_after: float = 1.0
    credits_exceeded: int = 0  # 401 "Maximum credits exceeded"
    forbidden: int = 0  # 403 sender identity not verified
    server_error: int = 0  # 500 with a JSON error body
    bad_gateway: int = 0  # 502 with an HTML (non-JSON) body
    unavailable: int = 0  # 503 with a JSON error body
    slow: int = 0  # sleep slow_seconds, then answer normally (message IS accepted)
    slow_seconds: float = 5.0
    drop_after_accept: int = 0  # accept + record, then close without any HTTP response


FAULT_ORDER = (
    "rate_limit",
    "credits_exceeded",
    "forbidden",
    "server_error",
    "bad_gateway",
    "unavailable",
    "slow",
)


@dataclass(frozen=True)
class FaultAnswer:
    """The HTTP answer of one injected fault."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


def fault_answer(fault: str, faults: Faults) -> FaultAnswer:
    """What SendGrid answers for `fault` (any name of FAULT_ORDER but "slow")."""
    if fault == "rate_limit":
        reset = math.ceil(time.time() + max(faults.rate_limit_reset_after, 0.001))
        return FaultAnswer(
            429,
            errors_body(error("too many requests", None, None)),
            headers={
                "X-RateLimit-Limit": str(RATE_LIMIT),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
        )
    if fault == "credits_exceeded":
        return FaultAnswer(401, errors_body(error("Maximum credits exceeded", None, None)))
    if fault == "forbidden":
        return FaultAnswer(
            403,
            errors_body(
                error(
                    "The from address does not match a verified Sender Identity. Mail cannot be"
                    " sent until this error is resolved.",
                    "from",
                    None,
                )
            ),
        )
    if fault == "server_error":
        return FaultAnswer(500, errors_body(error("internal server error", None, None)))
    if fault == "bad_gateway":
        return FaultAnswer(502, _BAD_GATEWAY_HTML, content_type="text/html")
    return FaultAnswer(503, errors_body(error("service unavailable", None, None)))
