"""The subscriber list (`store.subscribers`), one part per job, a module each: `members`
(look-ups, confirmations, suppressions, removal, counts), `imports` (new rows in bulk, the
expiry of sign-ups), `lifecycle` (welcome, pause, last open, reasons for leaving), `search`
(the workspace's keyset pages); `rows` holds the row shapes they share."""

from __future__ import annotations

from newsletter.store.audience import receiving
from newsletter.store.subscribers.imports import Imports
from newsletter.store.subscribers.lifecycle import Lifecycle
from newsletter.store.subscribers.members import Members
from newsletter.store.subscribers.search import SEARCH_FIELDS, Search, SubscriberPage, SubscriberRow

__all__ = ["SEARCH_FIELDS", "SubscriberPage", "SubscriberRow", "Subscribers", "receiving"]


class Subscribers(Members, Imports, Lifecycle, Search):
    """The subscriber list's one aggregate on the `Store`: every part's methods at once."""
