"""Settings: one source of defaults (newsletter.settings.schema), the file `init` writes generated
from it, and a wrong value named in one line by file, setting and expected type."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from newsletter.exceptions import ConfigError
from newsletter.settings import (
    SettingsFile,
    default_toml,
    load_settings,
    settings_from_dict,
    write_default_config,
)
from newsletter.settings.schema import parse
from tests.conftest import run_cli


def test_generated_file_loads_back_to_exactly_the_defaults(tmp_path):
    write_default_config(tmp_path)
    text = (tmp_path / "newsletter.toml").read_text(encoding="utf-8")
    assert text == default_toml()
    assert parse(tomllib.loads(text), "newsletter.toml") == SettingsFile()
    # An empty file, the generated one and no file at all are the same settings.
    assert load_settings(tmp_path / "newsletter.toml", env={}) == settings_from_dict({}, tmp_path)


def test_a_long_array_is_written_one_entry_a_line():
    """[articles] sections on one line was 193 characters: hard to reorder or edit."""
    lines = default_toml().splitlines()
    assert max(len(line) for line in lines) <= 100
    at = lines.index("sections = [")
    expected = [f'    "{heading}",' for heading in SettingsFile().articles.sections]
    assert lines[at + 1 : at + 1 + len(expected)] == expected
    assert lines[at + 1 + len(expected)] == "]"
    assert 'days = ["tue", "fri"]' in lines  # a short one stays on its line


def test_every_setting_is_in_the_generated_file_with_its_description_as_a_comment():
    lines = default_toml().splitlines()
    for table, section in SettingsFile.model_fields.items():
        assert f"[{table}]" in lines
        for key, field in section.annotation.model_fields.items():
            at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
            assert field.description, f"[{table}] {key} has no description"
            comment = []
            for line in reversed(lines[:at]):
                if not line.startswith("# "):
                    break
                comment.insert(0, line[2:])
            assert " ".join(comment) == field.description


def test_defaults_agree_everywhere(tmp_path):
    """The name used to be "Endings Explained" in the file and "Newsletter" when absent."""
    settings = settings_from_dict({"newsletter": {"name": "Night Shift"}}, tmp_path)
    assert settings.name == "Night Shift"
    assert settings.from_name == "Night Shift"  # empty from_name: the name
    assert settings_from_dict({}, tmp_path).name == SettingsFile().newsletter.name


@pytest.mark.parametrize(
    ("line", "replacement", "expected"),
    [
        (
            "batch_size = 1000",
            'batch_size = "lots"',
            '[delivery] batch_size: expected an integer, got "lots"',
        ),
        (
            "grace_hours = 6",
            'grace_hours = "six"',
            '[schedule] grace_hours: expected a number, got "six"',
        ),
        (
            'language = "en"',
            'language = "en"\ncolour = "red"',
            "[newsletter] colour: unknown setting",
        ),
        (
            'timezone = "Europe/Paris"',
            'timezone = "Mars/Olympus"',
            "[newsletter] timezone: expected an IANA time zone",
        ),
        ('time = "09:00"', 'time = "25:00"', "[schedule] time: expected a time of day as HH:MM"),
        (
            "concurrency = 4",
            "concurrency = 0",
            "[delivery] concurrency: input should be greater than or equal to 1",
        ),
        (
            "resend_uncertain = false",
            'resend_uncertain = "no"',
            "[delivery] resend_uncertain: expected true or false",
        ),
        ("[check]", "[chek]", "[chek]: unknown table"),
    ],
)
def test_a_wrong_value_is_one_line_naming_file_setting_and_type(
    tmp_path, line, replacement, expected
):
    assert run_cli(["init", "."], tmp_path).returncode == 0
    config = tmp_path / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    assert line in text
    config.write_text(text.replace(line, replacement, 1), encoding="utf-8")
    out = run_cli(["queue", "list"], tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"Error: {config.resolve()}: {expected}")


def test_environment_overrides_are_validated_and_named(tmp_path):
    write_default_config(tmp_path)
    env = {"NEWSLETTER_PROVIDER": "sendgrid", "NEWSLETTER_BASE_URL": "https://news.example/"}
    settings = load_settings(tmp_path / "newsletter.toml", env=env)
    assert settings.provider == "sendgrid" and settings.base_url == "https://news.example"
    with pytest.raises(ConfigError, match=r"\[newsletter\] provider \(from NEWSLETTER_PROVIDER\)"):
        load_settings(tmp_path / "newsletter.toml", env={"NEWSLETTER_PROVIDER": "smtp"})
    out = run_cli(["queue", "list"], tmp_path, env={"NEWSLETTER_BASE_URL": "news.example"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert (
        "[newsletter] base_url (from NEWSLETTER_BASE_URL): must start with https://" in out.stderr
    )


def test_weekday_names_and_toml_times_are_taken(tmp_path):
    settings = settings_from_dict(
        {"schedule": {"days": ["Tuesday", "FRI"], "time": tomllib.loads("t = 07:30:00")["t"]}},
        tmp_path,
    )
    assert settings.schedule.days == ("tue", "fri")
    assert settings.schedule.at.hour == 7 and settings.schedule.at.minute == 30


def test_help_does_not_import_pydantic(tmp_path):
    code = (
        "import sys\n"
        "from newsletter.cli import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('pydantic loaded' if 'pydantic' in sys.modules else 'pydantic not loaded')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("pydantic not loaded")
