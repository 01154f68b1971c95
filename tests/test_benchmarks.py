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
        [sys.executable, str(REPO / "benchmarks" / "smtp_send.py"), "--subscribers", "300"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "ratio: newsletter / ceiling = " in out.stdout
    assert "sink counted 300 -> OK" in out.stdout
    assert "at most 4 connections at once" in out.stdout
