"""Who sends: this process's name in the delivery log, the sending lease (one sender at a
time, taken over when its holder dies) and the stop request a signal sets."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta, tzinfo

from newsletter.exceptions import LeaseLost, SenderBusy
from newsletter.processes import process_gone
from newsletter.settings import Settings
from newsletter.store import Store

SENDER_LEASE = "sender"
# Who this process is in the delivery log and the lease table: host, pid and a random part.
PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def dead_local_process(holder: str) -> bool:
    """`holder` (a PROCESS_ID) was a process of this machine that no longer exists."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and process_gone(int(pid))


class SendingLease:
    """Only one process sends at a time. The lease expires if its holder dies, so a standby
    (or the next `run`) takes over; in-flight rows are only recovered by the new holder."""

    def __init__(
        self, store: Store, ttl: timedelta, holder: str | None = None, *, zone: tzinfo = UTC
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.zone = zone  # the newsletter's: what the messages show times in
        self.holder = holder or PROCESS_ID
        self.held = False
        self._renewed = float("-inf")  # time.monotonic() of the last acquire or renewal

    @classmethod
    def of(cls, store: Store, settings: Settings) -> SendingLease:
        """The lease with the settings' length, its times told in the newsletter's zone."""
        return cls(store, settings.schedule.lease, zone=settings.timezone)

    def acquire(self) -> bool:
        self._renewed = time.monotonic()
        self.held = self.store.meta.acquire(SENDER_LEASE, self.holder, self.ttl)
        if not self.held:
            current = self.store.meta.holder(SENDER_LEASE)
            if current and dead_local_process(current[0]):
                # Its holder was killed on this machine: no need to wait for the lease to expire.
                self.held = self.store.meta.take_over(
                    SENDER_LEASE, current[0], self.holder, self.ttl
                )
        return self.held

    def renew(self) -> None:
        """Called between batches. Renewing takes the database's write lock, so only once a
        tenth of the lease has passed: a stall long enough to lose the lease is longer than
        that, so it is still found out before the next batch."""
        now = time.monotonic()
        if self.held and now - self._renewed < self.ttl.total_seconds() / 10:
            return
        self._renewed = now
        if not self.store.meta.acquire(SENDER_LEASE, self.holder, self.ttl):
            self.held = False
            raise LeaseLost("the sending lease was lost (this process stalled); stopping")

    def release(self) -> None:
        if self.held:
            self.store.meta.release(SENDER_LEASE, self.holder)
            self.held = False

    def __enter__(self) -> SendingLease:
        if not self.acquire():
            current = self.store.meta.holder(SENDER_LEASE)
            until = current[1].astimezone(self.zone) if current else None
            who = f"{current[0]} (lease until {until:%H:%M:%S %Z})" if current else "another"
            raise SenderBusy(f"another sender is active: {who}; not sending from here")
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class StopRequest(threading.Event):
    """Set by SIGINT or SIGTERM (see `stop_on_signals`); remembers which one came first."""

    signal_name: str | None = None


@contextmanager
def stop_on_signals(
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopRequest]:
    """While inside: SIGINT and SIGTERM set the yielded stop request instead of raising, so
    a send finishes the request in flight, records it and stops between batches (give it
    to `SendHooks.stop`). The previous handlers come back on leaving. Main thread only."""
    stop = StopRequest()

    def handler(signum: int, _frame: object) -> None:
        if stop.signal_name is None:
            stop.signal_name = signal.Signals(signum).name
        stop.set()

    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
