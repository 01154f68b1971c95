"""The sink: authenticates, counts the `to` recipients and answers 202. No contract, no
faults, no recording, so a benchmark measures the sender and not this server."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from typing import Any

from newsletter.testing.sendgrid_server.rules import error, errors_body
from newsletter.testing.sendgrid_server.stats import ServerStats, SinkWindow
from newsletter.testing.sendgrid_server.transport import BaseServer, Exchange

_NOT_A_MAIL_SEND = errors_body(error("Bad Request: not a JSON mail send body.", None))
_AFTER_TO_KEY = re.compile(r"\s*:\s*\[")
_ARRAY = json.JSONDecoder()


def count_recipients(raw: bytes) -> int | None:
    """The `to` recipients of a mail send body, or None when it is not one: the sink's count.

    Decoding a 1000-personalization body whole costs about 5 ms, more than posting it; an
    ASCII body (the JSON every sender here writes) is searched for its `"to"` keys instead, and
    only each small `to` array is decoded. A key cannot be matched inside a string value: a
    quote in a JSON string is escaped, so `"to"` followed by a colon is always a key."""
    if not raw.isascii():
        try:
            return sum(len(p["to"]) for p in json.loads(raw)["personalizations"])
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            return None
    text = raw.decode("ascii")
    if not text.lstrip().startswith("{") or '"personalizations"' not in text:
        return None
    count = 0
    at = text.find('"to"')
    try:
        while at != -1:
            after = _AFTER_TO_KEY.match(text, at + 4)
            if after is None or text[at - 1] == "\\":
                at = text.find('"to"', at + 4)
                continue
            recipients, end = _ARRAY.raw_decode(text, after.end() - 1)
            count += len(recipients)
            at = text.find('"to"', end)
    except ValueError:
        return None
    return count


class SinkServer(BaseServer):
    """The cheapest server that still speaks Mail Send, to measure a sender's ceiling.

    ``take_window()`` tells what was accepted since the last look, with the first arrival and
    the last answer, so a benchmark reads the sender's rate as the server saw it.
    """

    def __init__(self, *args: Any, **fields: Any) -> None:
        super().__init__(*args, **fields)
        self._ids = itertools.count()
        self._window = SinkWindow()
        self._cpu_at = time.process_time()

    def answer(self, exchange: Exchange, length: int) -> None:
        started = time.time()
        raw = exchange.read_body(length)
        if raw is None:
            return
        recipients = count_recipients(raw)
        if recipients is None:
            exchange.send(400, _NOT_A_MAIL_SEND)
            return
        # Counted before answering, so a client that saw its 202 finds it in the window.
        answered = time.time()
        with self.lock:
            self._window = self._window.add(recipients, started, answered)
            self.count(ServerStats(requests_accepted=1, recipients_accepted=recipients))
        exchange.send(202, headers={"X-Message-Id": f"sink{next(self._ids):018d}"})

    def take_window(self) -> SinkWindow:
        """What was accepted since the last call (or the start), then start anew; with the
        process's CPU time since then."""
        with self.lock:
            window, self._window = self._window, SinkWindow()
            now = time.process_time()
            cpu, self._cpu_at = now - self._cpu_at, now
        return dataclasses.replace(window, cpu_seconds=cpu)
