"""Flags of which one must be given (`cli.app.one_of`): with neither, the command says which
in one line and does nothing; with one, the command gets its name."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["queue", "move", "some.txt"], "Error: say --up or --down"),
        (["resolve", "1"], "Error: say --resend or --mark-sent"),
    ],
)
def test_neither_flag_is_one_line_naming_both(folder, args, said):
    result = run_cli(args, folder)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [said]
    assert result.stdout == ""


def test_the_chosen_flag_reaches_the_command(folder):
    # An article nobody queued: the command ran with --down and says what it looked for.
    result = run_cli(["queue", "move", "nowhere.txt", "--down"], folder)
    assert result.returncode == 1
    assert "nowhere.txt" in result.stderr and "say --" not in result.stderr
