"""Change the publication cadence where the scheduler reads it: the [schedule] table of
newsletter.toml, rewritten with tomlkit so the editor's comments and layout stay, validated
by the same loader as every start before anything is written."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import tomlkit

from newsletter.config import CONFIG_NAME, Schedule, settings_from_dict
from newsletter.exceptions import ConfigError


def update_cadence(root: Path, days: list[str], at: str, articles_per_issue: int) -> Schedule:
    """Write the cadence into ROOT/newsletter.toml and return it as the loader reads it.
    Invalid values raise ConfigError naming the setting; the file is then left unchanged."""
    path = root / CONFIG_NAME
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "schedule" not in document:
        document.add("schedule", tomlkit.table())
    table = document["schedule"]
    table["days"] = list(days)
    table["time"] = at
    table["articles_per_issue"] = articles_per_issue
    text = tomlkit.dumps(document)
    if not days:
        raise ConfigError(f"{path}: schedule.days: choose at least one day")
    # The loader is the judge: what it refuses is never written.
    settings = settings_from_dict(tomllib.loads(text), root, {}, source=str(path))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return settings.schedule
