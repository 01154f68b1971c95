"""The table of `newsletter serve` behind a reverse proxy ([web])."""

from __future__ import annotations

from pydantic import Field, field_validator

from newsletter.settings.schema.base import Section


class WebSection(Section):
    """[web]: `newsletter serve` behind a reverse proxy."""

    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Addresses of the reverse proxies whose X-Forwarded-For and "
        'X-Forwarded-Proto are believed (comma-separated addresses or networks, "*" for '
        "any): the client address the sign-in and sign-up limits count. A request from "
        "anywhere else is counted by its own address.",
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: str) -> str:
        import ipaddress

        for item in (part.strip() for part in value.split(",")):
            if item in ("", "*") or item.startswith("unix:"):
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value
