"""Start-up time of `newsletter --help` against a bare `python -c "import click"`, measured in
the same run (interleaved, median of N each), so the ratio holds whatever the machine's load.

    .venv/bin/python benchmarks/startup.py [--runs 10]

The target (issue 13) is a ratio of at most 3: the command table imports click and nothing
heavy; each command imports what it uses when it runs.

Also printed, for issue 22's whole-command ratio: what `newsletter run` imports before its first
request (the publish tick, the send loop, the SendGrid provider, the doctor's gate and the
renderer's premailer), against the same baseline. Not a target of its own: it is the part of
`run`'s start-up that does not depend on the issue or the audience.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUN_IMPORTS = (
    "import newsletter.cli.run, newsletter.publish, newsletter.delivery, "
    "newsletter.providers.sendgrid, newsletter.doctor.gate, premailer"
)


def newsletter_command() -> list[str]:
    """The installed console script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).parent / "newsletter"
    if script.exists():
        return [str(script)]
    found = shutil.which("newsletter")
    return [found] if found else [sys.executable, "-m", "newsletter.cli"]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    commands = {
        'python -c "import click"': [sys.executable, "-c", "import click"],
        "newsletter --help": [*newsletter_command(), "--help"],
        "run's imports": [sys.executable, "-c", RUN_IMPORTS],
    }
    for command in commands.values():  # warm the file cache once, untimed
        timed(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(timed(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:<28} median {value * 1000:7.1f} ms over {args.runs} runs")
    baseline, ours = medians['python -c "import click"'], medians["newsletter --help"]
    print(f"ratio: {ours / baseline:.2f} (target: at most 3.00)")
    run_imports = medians["run's imports"]
    print(
        f"run's imports: {run_imports * 1000:.1f} ms = {run_imports / baseline:.2f}x the baseline"
    )


if __name__ == "__main__":
    main()
