"""Feeds into the queue (`[[feeds]]`): a site's RSS 2.0, Atom or JSON Feed polled on its
interval, each new entry queued once as an article or held with the contract's errors.

    fetch     the kept HTTP client and the conditional GET
    parse     feedparser (RSS, Atom) and the JSON Feed adapter -> `Entry`
    convert   an entry's HTML -> Markdown sections mapped through the article contract
    poll      one round over the feeds: take, queue or hold, remember, report; each feed's
              status (`feed_statuses`, for `feeds list`)
"""

from newsletter.feeds.parse import Entry, parse_feed
from newsletter.feeds.poll import FeedOutcome, FeedStatus, PollReport, feed_statuses, poll_feeds

__all__ = [
    "Entry",
    "FeedOutcome",
    "FeedStatus",
    "PollReport",
    "feed_statuses",
    "parse_feed",
    "poll_feeds",
]
