"""Rewrite keys of newsletter.toml where the code reads them, keeping the editor's comments
and layout (tomlkit): today the cadence, which the workspace's schedule page saves.

The new text is judged by the same loader as every start before anything is written. Saves
may run at once (threads of one `serve`, several `serve` processes): each read-modify-replace
holds an exclusive lock on a lock file beside newsletter.toml (flock, which also excludes
threads of one process, as each opens its own descriptor), writes its own temporary file in
the same folder and replaces the file in one rename, keeping its mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import tomlkit

from newsletter.exceptions import ConfigError
from newsletter.settings.load import CONFIG_NAME, settings_from_dict
from newsletter.settings.values import Schedule


def update_cadence(root: Path, days: list[str], at: str, articles_per_issue: int) -> Schedule:
    """Write the cadence into ROOT/newsletter.toml and return it as the loader reads it.
    Invalid values raise ConfigError naming the setting; the file is then left unchanged."""
    path = root / CONFIG_NAME
    if not days:
        raise ConfigError(f"{path}: schedule.days: choose at least one day")
    with _locked(path):
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
        # The loader is the judge: what it refuses is never written.
        settings = settings_from_dict(tomllib.loads(text), root, {}, source=str(path))
        try:
            _replace(path, text)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write: {exc.strerror}") from None
    return settings.schedule


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of PATH's edits (`.newsletter.toml.lock` beside it)."""
    lock = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"{lock}: cannot create the lock file: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _replace(path: Path, text: str) -> None:
    """Write TEXT to a unique temporary file beside PATH, with PATH's mode, and rename it
    over PATH: a reader sees the old file or the new one, never half of one."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
