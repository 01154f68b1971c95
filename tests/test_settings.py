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
from newsletter.settings.schema import FeedSection, parse
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
        if table == "feeds":  # an array of tables without a default: a commented example
            continue
        assert f"[{table}]" in lines
        start = lines.index(f"[{table}]")  # keys of the same name live in several tables
        for key, field in section.annotation.model_fields.items():
            at = next(
                i for i, line in enumerate(lines) if i > start and line.startswith(f"{key} = ")
            )
            assert field.description, f"[{table}] {key} has no description"
            comment = []
            for line in reversed(lines[:at]):
                if not line.startswith("# "):
                    break
                comment.insert(0, line[2:])
            assert " ".join(comment) == field.description


def test_the_feeds_example_lists_every_key_with_its_description():
    lines = default_toml().splitlines()
    assert "# [[feeds]]" in lines
    for key, field in FeedSection.model_fields.items():
        at = next(i for i, line in enumerate(lines) if line.startswith(f"# {key} = "))
        comment = []
        for line in reversed(lines[:at]):
            if not line.startswith("# # "):
                break
            comment.insert(0, line[4:])
        assert field.description and " ".join(comment) == field.description
    # Uncommented, the example is a valid list of feeds.
    example = "\n".join(
        line[2:] for line in lines[lines.index("# [[feeds]]") :] if not line.startswith("# # ")
    )
    assert parse(tomllib.loads(example), "x").feeds[0].url == "https://example.com/feed/"


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
        load_settings(tmp_path / "newsletter.toml", env={"NEWSLETTER_PROVIDER": "postmark"})
    # smtp is a provider, but it needs its server.
    with pytest.raises(ConfigError, match=r"\[smtp\] host: needed .*\(from NEWSLETTER_PROVIDER\)"):
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
        "from newsletter.cli import main\n"
        "try:\n    main.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('pydantic loaded' if 'pydantic' in sys.modules else 'pydantic not loaded')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("pydantic not loaded")


# -- addresses (issue 25, point 1) ----------------------------------------------------------
NOT_AN_ADDRESS = (
    '[newsletter] from_email: "editor at example" is not an email address '
    "(an email address must have an @-sign)"
)


def test_an_invalid_sender_address_is_refused_where_the_file_is_read(tmp_path):
    with pytest.raises(ConfigError) as refused:
        settings_from_dict({"newsletter": {"from_email": "editor at example"}}, tmp_path)
    assert str(refused.value) == f"newsletter.toml: {NOT_AN_ADDRESS}"
    # The subscribers' rules, not a look for "@": a header injection, a host without a dot.
    for address in ("ed@example.com\r\nBcc: all@example.com", "ed@localhost"):
        with pytest.raises(ConfigError, match=r"\[newsletter\] from_email: .* is not an email"):
            settings_from_dict({"newsletter": {"from_email": address}}, tmp_path)
    with pytest.raises(ConfigError, match=r"^newsletter.toml: \[editor\] email: \"ed@localhost\""):
        settings_from_dict({"editor": {"email": "ed@localhost"}}, tmp_path)
    # Stored as subscribers' addresses are: the domain folded, in its IDNA form.
    settings = settings_from_dict(
        {"newsletter": {"from_email": "Ed@Bücher.Example"}, "editor": {"email": " "}}, tmp_path
    )
    assert settings.from_email == "Ed@xn--bcher-kva.example" and settings.editor_email == ""


@pytest.mark.parametrize("command", [["check", "issues"], ["run"]])
def test_check_and_run_refuse_an_invalid_sender_in_one_line(tmp_path, command):
    assert run_cli(["init", ".", "--sample"], tmp_path).returncode == 0
    if command[0] == "check":
        command = ["check", *sorted(str(p) for p in (tmp_path / "issues").iterdir())]
    config = tmp_path / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('from_email = "editor@example.com"', 'from_email = "editor at example"'),
        encoding="utf-8",
    )
    out = run_cli(command, tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"Error: {config.resolve()}: {NOT_AN_ADDRESS}"]
    assert not list((tmp_path / "outbox").rglob("*.eml"))  # nobody was sent anything


# -- bounds (issue 25, security point 8) -----------------------------------------------------
@pytest.mark.parametrize(
    ("table", "key", "value", "expected"),
    [
        ("schedule", "articles_per_issue", 51, "less than or equal to 50"),
        ("schedule", "articles_per_issue", int("9" * 400), "less than or equal to 50"),
        ("schedule", "articles_per_issue", 0, "greater than or equal to 1"),
        ("delivery", "concurrency", 65, "less than or equal to 64"),
        ("delivery", "max_retries", 10**18, "less than or equal to 100"),
        ("schedule", "grace_hours", float("inf"), "less than or equal to 744"),
    ],
)
def test_numbers_are_bounded(tmp_path, table, key, value, expected):
    with pytest.raises(ConfigError, match=rf"\[{table}\] {key}: input should be {expected}"):
        settings_from_dict({table: {key: value}}, tmp_path)


def test_the_cadence_editor_refuses_an_unbounded_count_and_leaves_the_file(tmp_path):
    from newsletter.settings import update_cadence

    write_default_config(tmp_path)
    config = tmp_path / "newsletter.toml"
    before = config.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[schedule\] articles_per_issue: input should be"):
        update_cadence(tmp_path, ["mon"], "09:00", int("9" * 400))
    assert config.read_text(encoding="utf-8") == before
    assert update_cadence(tmp_path, ["mon"], "09:00", 50).articles_per_issue == 50


# -- [delivery] (issue 26) --------------------------------------------------------------------
def test_delivery_knobs_live_in_delivery_and_reach_the_sender(tmp_path):
    from newsletter.delivery import DeliveryPolicy

    settings = settings_from_dict(
        {
            "delivery": {
                "batch_size": 7,
                "concurrency": 2,
                "max_retries": 1,
                "max_failed_batches": 9,
                "backoff_seconds": 0.25,
                "backoff_cap_seconds": 2,
                "resend_uncertain": True,
                "claim_timeout_seconds": 30,
            }
        },
        tmp_path,
    )
    policy = DeliveryPolicy.from_settings(settings)
    assert (policy.batch_size, policy.concurrency, policy.max_retries) == (7, 2, 1)
    assert (policy.max_failed_batches, policy.backoff_base, policy.backoff_cap) == (9, 0.25, 2)
    assert policy.resend_uncertain and policy.claim_timeout.total_seconds() == 30
    text = default_toml()
    delivery = text[text.index("[delivery]") : text.index("[check]")]
    for key in ("batch_size", "concurrency", "max_retries", "max_failed_batches"):
        assert f"\n{key} = " in delivery
    sendgrid = text[text.index("[sendgrid]") :]
    assert "batch_size" not in sendgrid and "concurrency" not in sendgrid


def test_delivery_knobs_under_sendgrid_still_read_with_a_warning(tmp_path):
    """The outbox, too, sends in [delivery] batch_size batches, read from the old place."""
    assert run_cli(["init", ".", "--sample"], tmp_path).returncode == 0
    config = tmp_path / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace("batch_size = 1000\n", "")
    text = text.replace("[sendgrid]\n", "[sendgrid]\nbatch_size = 2\n")
    config.write_text(text, encoding="utf-8")
    out = run_cli(["run"], tmp_path)
    assert out.returncode == 0, out.stderr
    warning = (
        f"{config.resolve()}: [sendgrid] batch_size is deprecated: move it to [delivery] batch_size"
    )
    assert [line for line in out.stderr.splitlines() if "deprecated" in line] == [
        f"WARNING newsletter.settings.load: {warning}"
    ]
    from newsletter.store import Store

    settings = load_settings(config, env={})
    assert settings.delivery.batch_size == 2
    store = Store(settings.database_url)
    try:
        rows = store.deliveries.in_state(1, "sent")
        assert len(rows) == 4 and {row.batch for row in rows} == {1, 2}
    finally:
        store.close()


def test_a_delivery_knob_in_both_places_is_refused(tmp_path):
    data = {"sendgrid": {"concurrency": 2}, "delivery": {"concurrency": 3}}
    with pytest.raises(ConfigError) as refused:
        settings_from_dict(data, tmp_path)
    assert str(refused.value) == (
        "newsletter.toml: [sendgrid] concurrency and [delivery] concurrency are both set: "
        "[sendgrid] concurrency is deprecated, keep only [delivery] concurrency"
    )
