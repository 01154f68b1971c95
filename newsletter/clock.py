"""The one clock of the project: every "now" (the store's stamps through `records.utcnow`,
the send loop's `SendHooks.clock`, pacing's windows, the worker's waits) reads it, so a test
moves time for the whole application at once instead of shifting what the database holds.

The machine's time unless a test set it: in-process with `CLOCK.set(at)` (frozen there until
`advance` or `reset`), in a subprocess through `NEWSLETTER_TEST_CLOCK` (an ISO instant with
its offset): that process's time then starts at that instant and runs on at the machine's
pace. Only tests set the variable; a process started with it logs so once.

Standard library only and `exceptions` (below `records`, whose `utcnow` reads it)."""

from __future__ import annotations

import logging
import os
import threading
import time as _time
from datetime import UTC, datetime, timedelta

from newsletter.exceptions import ConfigError

log = logging.getLogger(__name__)

# Set only by tests, for the processes they start: when the clock of that process starts.
CLOCK_ENV = "NEWSLETTER_TEST_CLOCK"


class Clock:
    """Unix time and aware UTC time, from the machine or from where a test put it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen: float | None = None  # a test's instant, unix time
        self._offset = 0.0  # a subprocess's start instant minus the machine's time then
        self._env_read = False

    def time(self) -> float:
        """Now, as unix time (what `SendHooks.clock` and waits compute with)."""
        if not self._env_read:
            self._from_env()
        frozen = self._frozen
        return frozen if frozen is not None else _time.time() + self._offset

    def now(self) -> datetime:
        """Now, aware UTC (the store refuses naive times)."""
        return datetime.fromtimestamp(self.time(), UTC)

    # -- what tests do --------------------------------------------------------------------
    def set(self, at: datetime) -> None:
        """Stop the clock at `at` (aware) for this whole process, until `advance`/`reset`."""
        if at.tzinfo is None:
            raise ValueError("the clock needs an aware time")
        with self._lock:
            self._env_read = True
            self._frozen = at.timestamp()

    def advance(self, seconds: float | timedelta) -> None:
        """Move a set clock on (a frozen one stays frozen at the new instant)."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        with self._lock:
            if self._frozen is None:
                self._offset += step
            else:
                self._frozen += step

    def reset(self) -> None:
        """Back to the machine's time (and to the environment's override, read again)."""
        with self._lock:
            self._frozen, self._offset, self._env_read = None, 0.0, False

    def _from_env(self) -> None:
        with self._lock:
            if self._env_read:
                return
            self._env_read = True
            raw = os.environ.get(CLOCK_ENV, "").strip()
            if not raw:
                return
            try:
                start = datetime.fromisoformat(raw)
            except ValueError:
                raise ConfigError(f"{CLOCK_ENV}={raw!r} is not an ISO instant") from None
            if start.tzinfo is None:
                raise ConfigError(f"{CLOCK_ENV}={raw!r} needs its offset (e.g. +00:00)")
            self._offset = start.timestamp() - _time.time()
        log.info("%s: this process's clock starts at %s", CLOCK_ENV, start.isoformat())


CLOCK = Clock()


def now() -> datetime:
    """Aware UTC now, from the one clock."""
    return CLOCK.now()


def time() -> float:
    """Unix time now, from the one clock."""
    return CLOCK.time()
