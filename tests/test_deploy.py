"""The production files in deploy/ (the README's "Going to production"): the systemd units are
valid for systemd and their ExecStart lines are commands our CLI accepts, as written."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
INSTALLED_BINARY = "/opt/newsletter/venv/bin/newsletter"


def _exec_start(unit: Path) -> list[str]:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    return shlex.split(parser["Service"]["ExecStart"])


def test_there_are_units_for_serve_and_scheduler() -> None:
    commands = {_exec_start(unit)[1] for unit in UNITS}
    assert commands == {"serve", "scheduler"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_command_is_accepted_by_the_cli(unit: Path) -> None:
    argv = _exec_start(unit)
    assert argv[0] == INSTALLED_BINARY  # the path the README's install steps create
    # --help after the unit's own options: click parses them all first, so an unknown or
    # misspelt option fails here with exit 2.
    done = subprocess.run(
        [sys.executable, "-m", "newsletter.cli", *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_is_valid_for_systemd(unit: Path, tmp_path: Path) -> None:
    # The binary the unit names does not exist on a build machine: point it at a real one.
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED_BINARY, shutil.which("true") or "/bin/true"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Unknown key" not in done.stderr and "Unknown section" not in done.stderr, done.stderr
