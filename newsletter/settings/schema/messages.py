"""A validation error as one line: `file: [table] key: what was expected (got ...)`, the
environment variable named when one set the value, the valid keys named for an unknown one."""

from __future__ import annotations

from pydantic import ValidationError

from newsletter.settings.schema.base import ADDRESS_ERROR, toml_literal
from newsletter.settings.schema.file import SettingsFile
from newsletter.settings.schema.workflow import FeedSection

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
}


def one_line(error: ValidationError, source: str, overridden: dict[tuple[str, str], str]) -> str:
    """The first problem as `file: [table] key: what was expected (got ...)`."""
    problems = error.errors(include_url=False)
    first = problems[0]
    loc = [str(part) for part in first["loc"]]
    table, key = (loc + ["", ""])[:2]
    where = f"[{table}] {key}".strip() if key else f"[{table}]"
    if table == "feeds" and key.isdigit():  # an array of tables: [[feeds]] (item n) key
        loc = loc[2:]
        where = f"[[feeds]] (item {int(key) + 1})" + (f" {loc[0]}" if loc else "")
        key = loc[0] if loc else ""
        if first["type"] == "extra_forbidden":
            return f"{source}: {where}: unknown setting; [[feeds]] has " + ", ".join(
                FeedSection.model_fields
            )
    elif len(loc) > 2:
        where += f" (item {int(loc[2]) + 1})" if loc[2].isdigit() else f".{'.'.join(loc[2:])}"
    kind = first["type"]
    if kind == "extra_forbidden":
        what = "unknown setting" if key else "unknown table"
        valid = _known(table, key)
        return f"{source}: {where}: {what}{valid}"
    if kind in _EXPECTED:
        what = f"expected {_EXPECTED[kind]}, got {toml_literal(first['input'])}"
    else:
        what = first["msg"].removeprefix("Value error, ")
        what = what[0].lower() + what[1:]
        if kind != ADDRESS_ERROR and not isinstance(first.get("input"), dict):
            what += f" (got {toml_literal(first['input'])})"
    env = overridden.get((table, key))
    if env:
        where += f" (from {env})"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{source}: {where}: {what}{more}"


def _known(table: str, key: str) -> str:
    sections = SettingsFile.model_fields
    if not key:
        return f"; tables are {', '.join(f'[{name}]' for name in sections)}"
    model = sections[table].annotation
    return f"; [{table}] has {', '.join(model.model_fields)}"  # type: ignore[union-attr]
