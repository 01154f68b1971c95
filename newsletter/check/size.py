"""Size: Gmail clips messages over about 102 KB, hiding the rest (unsubscribe link included)."""

from __future__ import annotations

from newsletter.check.findings import ERROR, WARNING, Finding
from newsletter.render import GMAIL_CLIP_BYTES

# Above this share of Gmail's limit, say the issue is close to being clipped.
NEAR_CLIP_RATIO = 0.9


def check_size(html: str) -> list[Finding]:
    size = len(html.encode("utf-8"))
    limit_kb = GMAIL_CLIP_BYTES // 1024
    if size > GMAIL_CLIP_BYTES:
        return [
            Finding(
                ERROR,
                "gmail-clip",
                f"the HTML is {size / 1024:.1f} KB ({size:,} bytes): Gmail clips messages over "
                f"{limit_kb} KB and hides the rest, unsubscribe link included; shorten it or "
                "send fewer articles",
                "html",
            )
        ]
    if size > GMAIL_CLIP_BYTES * NEAR_CLIP_RATIO:
        return [
            Finding(
                WARNING,
                "gmail-clip-near",
                f"the HTML is {size / 1024:.1f} KB, close to the {limit_kb} KB at which Gmail "
                "clips messages",
                "html",
            )
        ]
    return []
