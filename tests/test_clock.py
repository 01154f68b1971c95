"""The one clock (newsletter.clock): what `records.utcnow`, the send loop's default clock and
pacing read; set and moved by a test for the whole process, or started elsewhere for a
subprocess through NEWSLETTER_TEST_CLOCK."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from newsletter import clock
from newsletter.clock import CLOCK, CLOCK_ENV
from newsletter.delivery import SendHooks
from newsletter.records import utcnow
from tests.conftest import run_cli

AT = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _reset():
    yield
    CLOCK.reset()


def test_a_set_clock_is_every_now_of_the_process_until_reset():
    CLOCK.set(AT)
    assert utcnow() == AT == clock.now()
    assert SendHooks().clock() == AT.timestamp()  # the send loop's default clock
    CLOCK.advance(90)
    CLOCK.advance(timedelta(hours=1))
    assert utcnow() == AT + timedelta(hours=1, seconds=90)
    CLOCK.reset()
    assert abs((utcnow() - datetime.now(UTC)).total_seconds()) < 5


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        CLOCK.set(datetime(2031, 1, 1))


def _now_in_subprocess(value: str) -> subprocess.CompletedProcess:
    code = "from newsletter.records import utcnow; print(utcnow().isoformat())"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={CLOCK_ENV: value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_subprocess_starts_its_clock_where_the_variable_says_and_it_runs_on():
    done = _now_in_subprocess(AT.isoformat())
    assert done.returncode == 0, done.stderr
    seen = datetime.fromisoformat(done.stdout.strip())
    assert AT <= seen < AT + timedelta(seconds=30)


def test_a_wrong_value_is_a_one_line_error_naming_the_variable(tmp_path):
    assert run_cli(["init", "."], tmp_path).returncode == 0
    bad = run_cli(["queue", "list"], tmp_path, env={CLOCK_ENV: "tomorrow"})
    assert bad.returncode == 1
    assert f"{CLOCK_ENV}='tomorrow' is not an ISO instant" in bad.stderr
    assert "Traceback" not in bad.stderr
    naive = run_cli(["queue", "list"], tmp_path, env={CLOCK_ENV: "2031-05-04T03:02:01"})
    assert naive.returncode == 1 and "needs its offset" in naive.stderr, naive.stderr
