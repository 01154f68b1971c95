"""What every table of the schema shares: a frozen section that refuses unknown keys and
strings for numbers, the subscribers' address rule as a one-line error, and a value as TOML
(for the generated file and for the errors that show what was given)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from newsletter.addresses import EmailNotValidError, normalize_address

ADDRESS_ERROR = "not_an_address"  # its message shows the value itself


def address(value: str) -> str:
    """The subscribers' address rules (newsletter.addresses), as a one-line schema error."""
    try:
        return normalize_address(value)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        raise PydanticCustomError(
            ADDRESS_ERROR,
            "{value} is not an email address ({reason})",
            {
                "value": json.dumps(value, ensure_ascii=False),
                "reason": reason[:1].lower() + reason[1:],
            },
        ) from None


class Section(BaseModel):
    """One `[table]` of the file: frozen, keyword-only, unknown keys refused, no coercion from
    strings (a quoted number in TOML is a mistake worth naming)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def toml_literal(value: Any) -> str:
    """A default as TOML (strings, numbers, booleans and lists of them are all we have)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)
