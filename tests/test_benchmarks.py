"""Benchmark scripts run at small sizes too (their figures are not checked: no timed tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_events_benchmark_runs_below_twenty_posts():
    """It asked islice for a negative count when the POSTs were fewer than its probe."""
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "events.py"),
            "--events",
            "2500",
            "--subscribers",
            "300",
            "--backend",
            "sqlite",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "[sqlite] 2,000 events in" in out.stdout  # the probe took the last, partial POST
    assert "then 1 POSTs (500 events) one at a time" in out.stdout
    assert "[sqlite] counts: exact" in out.stdout


def test_the_smtp_benchmark_sends_each_message_once():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "smtp_send.py"),
            *("--subscribers", "300", "--sink", "aiosmtpd"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "ratio: newsletter / ceiling (smtplib alone, mail/rcpt/data) = " in out.stdout
    assert "ratio: newsletter / ceiling (our client alone, pipelined) = " in out.stdout
    assert "sink counted 300 -> OK" in out.stdout
    assert "at most 4 connections at once" in out.stdout


def test_the_smtp_benchmark_signs_and_counts_at_postfixs_smtp_sink():
    from tests.postfix_server import postfix_or_skip

    postfix_or_skip()  # smtp-sink comes with Debian's postfix
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "smtp_send.py"),
            *("--subscribers", "300", "--sink", "smtp-sink", "--dkim"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "sink: smtp-sink; messages DKIM-signed" in out.stdout
    assert "sink took 300" in out.stdout and "sink counted 300 -> OK" in out.stdout
    assert out.stdout.count("sink took 300") == 3  # ours and both ceilings, each counted


def test_the_import_benchmark_runs_the_new_flow_at_a_small_size():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "import_upload.py"), "--rows", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "HTTP 303 in" in out.stdout and "import done after" in out.stdout
    assert "(added 3,000, updated 0, skipped 0)" in out.stdout


def test_the_segment_count_benchmark_runs_small():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "segment_count.py"),
            "--subscribers",
            "2000",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "filled 2,000 subscribers" in out.stdout
    assert "segment count 'tag:films and not tag:paused':" in out.stdout
