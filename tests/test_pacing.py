"""The pacing arithmetic (newsletter.pacing) with an injected clock: caps per hour and per
day, the warm-up plan, where each window ends, and what the workspace would say. No sleeping:
every time is given."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from newsletter.exceptions import ConfigError
from newsletter.pacing import DAILY, HOURLY, WARMUP, Caps, allowance, warmup_cap

PARIS = ZoneInfo("Europe/Paris")


def at(hour: int, minute: int = 0, day: int = 7) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=PARIS)


def test_no_limit_is_no_limit():
    caps = Caps.parse()
    result = allowance(caps, now=at(10), zone=PARIS, sent_this_hour=10**6, sent_today=10**7)
    assert result.now is None and result.next_window is None


def test_the_hourly_cap_stops_at_the_cap_and_opens_at_the_next_hour():
    caps = Caps.parse(max_per_hour=1000)
    assert allowance(caps, now=at(13, 20), zone=PARIS, sent_this_hour=400, sent_today=0).now == 600
    full = allowance(caps, now=at(13, 20), zone=PARIS, sent_this_hour=1000, sent_today=5000)
    assert full.now == 0 and full.held_by == HOURLY
    assert full.next_window == at(14)
    assert full.describe(12_000, PARIS) == "paused until 14:00 by the hourly cap, 12,000 left"
    # Over the cap (a restart that counted late) is still 0, never negative.
    assert allowance(caps, now=at(13), zone=PARIS, sent_this_hour=1200, sent_today=0).now == 0


def test_the_daily_cap_wins_over_the_hour_and_opens_at_local_midnight():
    caps = Caps.parse(max_per_hour=1000, max_per_day=2500)
    partly = allowance(caps, now=at(15), zone=PARIS, sent_this_hour=0, sent_today=2100)
    assert partly.now == 400
    full = allowance(caps, now=at(23, 30), zone=PARIS, sent_this_hour=1000, sent_today=2500)
    assert full.held_by == DAILY
    assert full.next_window == datetime(2026, 12, 8, 0, 0, tzinfo=PARIS)
    assert full.next_window.astimezone(UTC) == datetime(2026, 12, 7, 23, 0, tzinfo=UTC)


def test_the_warm_up_plan_caps_each_day_then_lets_go():
    caps = Caps.parse(
        max_per_day=3000, warmup="50,100,500,1000,5000", warmup_start=date(2026, 12, 7)
    )
    assert [warmup_cap(caps, date(2026, 12, d)) for d in range(6, 14)] == [
        50,
        50,
        100,
        500,
        1000,
        5000,
        0,
        0,
    ]
    day1 = allowance(caps, now=at(9), zone=PARIS, sent_this_hour=0, sent_today=50)
    assert day1.now == 0 and day1.held_by == WARMUP
    assert day1.next_window == datetime(2026, 12, 8, tzinfo=PARIS)
    # Day 5's plan (5000) is over max_per_day: the smaller cap holds, and says so.
    day5 = allowance(caps, now=at(9, day=11), zone=PARIS, sent_this_hour=0, sent_today=3000)
    assert day5.now == 0 and day5.held_by == DAILY
    after = allowance(caps, now=at(9, day=20), zone=PARIS, sent_this_hour=0, sent_today=2000)
    assert after.now == 1000


def test_the_day_is_the_newsletters_day_not_utcs():
    caps = Caps.parse(warmup="50,100", warmup_start=date(2026, 12, 7))
    # 23:30 UTC on the 7th is already the 8th in Paris: day 2 of the plan.
    late = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    assert allowance(caps, now=late, zone=PARIS, sent_this_hour=0, sent_today=0).now == 100


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"max_per_hour": -1}, "[sending] max_per_hour: must be 0 (no limit) or more"),
        ({"warmup": "50,,100", "warmup_start": date(2026, 1, 1)}, "item 2 ('')"),
        ({"warmup": "50,abc", "warmup_start": date(2026, 1, 1)}, "item 2 ('abc')"),
    ],
)
def test_wrong_values_are_errors_naming_the_key(values, words):
    with pytest.raises(ConfigError, match=None) as caught:
        Caps.parse(**values)
    assert words in str(caught.value)


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        allowance(
            Caps.parse(max_per_hour=1),
            now=datetime(2026, 1, 1),
            zone=PARIS,
            sent_this_hour=0,
            sent_today=0,
        )


def test_a_plan_not_started_yet_is_on_its_first_day():
    caps = Caps.parse(warmup="50,100")
    assert warmup_cap(caps, date(2026, 12, 7)) == 50
    assert allowance(caps, now=at(10), zone=PARIS, sent_this_hour=0, sent_today=20).now == 30


def test_the_windows_a_claim_counts_are_the_hour_and_the_day_that_hold_now():
    from newsletter.pacing import Window, windows

    caps = Caps.parse(max_per_hour=1000, warmup="50,100", warmup_start=date(2026, 12, 7))
    assert windows(caps, now=at(13, 20), zone=PARIS) == (
        Window(since=at(13), limit=1000),
        Window(since=at(0), limit=50),
    )
    # After the plan and without max_per_day: only the hour's window.
    assert windows(caps, now=at(9, day=20), zone=PARIS) == (
        Window(since=at(9, day=20), limit=1000),
    )
    assert windows(Caps.parse(), now=at(9), zone=PARIS) == ()
