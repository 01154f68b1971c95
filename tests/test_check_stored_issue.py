"""`newsletter check ISSUE_ID` runs the editorial rules too: the stored subject and preheader
and the issue's articles, read again from issues/, through the real CLI on a real SQLite
database. What it cannot check it says, never skipping in silence."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import run_cli, write

DATA = Path(__file__).resolve().parent / "data"


def sent_leaky_issue(folder: Path) -> Path:
    """A one-article issue whose Quick Recap gives the ending away, sent through the outbox."""
    assert run_cli(["init", "."], folder).returncode == 0
    write(folder / "s.csv", "email,name\nreader@example.com,Reader\n")
    assert run_cli(["subscribers", "import", "s.csv"], folder).returncode == 0
    assert run_cli(["queue", "add", str(DATA / "leaky_recap.txt")], folder).returncode == 0
    sent = run_cli(["run", "--once"], folder)
    assert sent.returncode == 0 and "issue 1:" in sent.stdout, sent.stdout + sent.stderr
    return folder / "issues" / "leaky_recap.txt"


def test_check_of_a_stored_issue_reports_its_spoiler_leak(tmp_path):
    stored = sent_leaky_issue(tmp_path)
    out = run_cli(["check", "1"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"warning {stored}:9: 'By the end, Ines betrays her brother" in out.stdout
    assert "echoes 'What Happens in the Ending' at line 12" in out.stdout
    # The subject went out with the issue: it is what the check compares, not a new one.
    assert "editorial-not-run" not in out.stdout and "edited after" not in out.stdout

    config = tmp_path / "newsletter.toml"
    config.write_text(
        config.read_text().replace('spoiler_leak = "warning"', 'spoiler_leak = "error"')
    )
    out = run_cli(["check", "1"], tmp_path)
    assert out.returncode == 1 and f"error {stored}:9:" in out.stdout


def test_check_of_a_stored_issue_says_what_it_could_not_check(tmp_path):
    stored = sent_leaky_issue(tmp_path)
    # Edited since it went out: checked as it is now, and said so.
    later = time.time() + 5
    os.utime(stored, (later, later))
    out = run_cli(["check", "1"], tmp_path)
    assert "leaky_recap.txt was edited after issue 1 was made" in out.stdout
    assert "gives the ending away" in out.stdout

    # Gone: the checks that could not run are named, with the file and why.
    hidden = stored.rename(tmp_path / "elsewhere.txt")
    out = run_cli(["check", "1"], tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr
    assert f"warning {stored}: 'The Salt Road (2023): Ending Explained' of issue 1 cannot" in (
        out.stdout
    )
    assert "its article contract and spoiler-leak checks could not run" in out.stdout
    assert "gives the ending away" not in out.stdout

    # Queued again: the article is no longer the issue's, and the check says so.
    hidden.rename(stored)
    assert run_cli(["queue", "add", str(stored)], tmp_path).returncode == 0
    out = run_cli(["check", "1"], tmp_path)
    assert "issue 1 names no article file (it carried 'The Salt Road" in out.stdout
    assert "could not run" in out.stdout
