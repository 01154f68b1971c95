"""The delivery log, the truth about who has an issue, kept at the size of its batches.

An issue's audience is planned as a definition (`delivery_plans`: the segment, its relative
ages anchored at planning -- without one, every active subscriber -- up to the highest
subscriber id at planning). Each claim reads the next id range of it (those receiving and in
the segment at claim time; those of the audience who left, paused or stopped matching since
planning are counted as skipped) and writes one `delivery_batches` row, whose state is every
recipient's state. A recipient gets a row of their own in `deliveries` only where their story
differs from their batch's: refused by the provider, settled alone by an event or the editor,
re-sent alone, skipped with a reason, a reader-time wave's reader. Claims are serialised on
the plan row (BEGIN IMMEDIATE on SQLite, SELECT ... FOR UPDATE on PostgreSQL), so concurrent
senders read disjoint ranges: each subscriber once.

`Deliveries` (`store.deliveries`) is made of one part per job, a module each: `plans`
(planning, reader time's waves), `batches` (claiming), `stopped` (what a stopped sender left
in flight, what is left to send), `outcomes` (recording a batch's outcome), `settling`
(decisions after the send, a removed subscriber), `reports` (counts and lists); `rows` holds
the row shapes they share. Every writer of these three tables is in this package
(tests/test_store_writers.py)."""

from __future__ import annotations

from newsletter.store.deliveries.batches import Batches
from newsletter.store.deliveries.outcomes import Outcomes
from newsletter.store.deliveries.plans import Plans
from newsletter.store.deliveries.reports import Reports
from newsletter.store.deliveries.rows import decode_excluded, encode_excluded
from newsletter.store.deliveries.settling import Settling
from newsletter.store.deliveries.stopped import Stopped

__all__ = ["Deliveries", "decode_excluded", "encode_excluded"]


class Deliveries(Plans, Batches, Stopped, Outcomes, Settling, Reports):
    """The delivery log's one aggregate on the `Store`: every part's methods at once."""
