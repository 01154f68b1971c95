"""What a send is given: the delivery log, the provider, the policy, and the hooks that tie
the send to its process. Built once where the process starts (the CLI, a worker, the
scheduler) and handed down unchanged but for `under(lease)`."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict, Unpack

from newsletter import clock as app_clock
from newsletter.delivery.lease import PROCESS_ID, SendingLease
from newsletter.delivery.log import DeliveryLog, StoreLog
from newsletter.delivery.policy import DeliveryPolicy
from newsletter.providers import Provider
from newsletter.settings import Settings
from newsletter.store import Store

# Makes the progress callback of one issue from its id and how many deliveries are left.
ProgressFactory = Callable[[int, int], Callable[[int], None]]


@dataclass(frozen=True, kw_only=True)
class SendHooks:
    """How a send meets its process. `progress` makes each issue's progress callback (a
    progress bar per issue); `heartbeat` runs between batches (renews a lease, or raises to
    stop a scheduler or a worker); `stop` set (by a signal, see `stop_on_signals`): the
    request in flight is finished and recorded, the rest stays pending and the issue
    resumable; `worker` is who claims, in the delivery log; `sleep` and `clock` (unix time,
    to honour a provider's retry time and for pacing's windows) are the process's: the
    one clock (`newsletter.clock`) unless a test gives its own."""

    progress: ProgressFactory | None = None
    heartbeat: Callable[[], None] | None = None
    stop: threading.Event | None = None
    worker: str = PROCESS_ID
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = app_clock.time

    def stop_requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()


class SendOptions(TypedDict, total=False):
    """What a caller may give a send beyond the store, the settings and the provider (the
    keywords of `SendContext.of` and of the tick's context built over it)."""

    policy: DeliveryPolicy | None  # None: the settings' [delivery] policy
    hooks: SendHooks | None  # None: no progress, no heartbeat, never stopped


@dataclass(frozen=True, kw_only=True)
class SendContext:
    """Everything a send needs and nothing more: the delivery log (the few store methods the
    loop calls, `DeliveryLog`), the provider, the policy and the hooks."""

    log: DeliveryLog
    provider: Provider
    policy: DeliveryPolicy
    hooks: SendHooks = SendHooks()

    @classmethod
    def of(
        cls, store: Store, settings: Settings, provider: Provider, **options: Unpack[SendOptions]
    ) -> SendContext:
        """The context over the application's store, with the settings' policy unless one
        is given."""
        return cls(
            log=StoreLog(store, settings),
            provider=provider,
            policy=options.get("policy") or DeliveryPolicy.from_settings(settings),
            hooks=options.get("hooks") or SendHooks(),
        )

    def beating(self, heartbeat: Callable[[], None]) -> SendContext:
        """This context with `heartbeat` between batches, unless it has one already (a
        scheduler's, which renews the lease itself)."""
        if self.hooks.heartbeat is not None:
            return self
        return dataclasses.replace(self, hooks=dataclasses.replace(self.hooks, heartbeat=heartbeat))

    def under(self, lease: SendingLease) -> SendContext:
        """This context sending under `lease`: renewed between batches."""
        return self.beating(lease.renew)
