"""Request bodies under a cap. Every handler that reads a body (the sign-up form, the
webhook, the workspace's forms) refuses one over its cap with the same signal, answered 413
(or the form's own error page) where it is caught."""

from __future__ import annotations

from starlette.requests import Request

from newsletter.exceptions import BodyTooLarge

__all__ = ["BODY_LIMIT_FORM", "BodyTooLarge", "read_body"]

BODY_LIMIT_FORM = 16 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
