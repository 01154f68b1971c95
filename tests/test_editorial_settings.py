"""[articles], [issue] and [check] spoiler_leak in newsletter.toml: defaults from one place,
mistakes named by table and key."""

from __future__ import annotations

import pytest

from newsletter.contract import DEFAULT_CONTRACT
from newsletter.exceptions import ConfigError
from newsletter.settings import settings_from_dict


def test_defaults(tmp_path):
    settings = settings_from_dict({}, tmp_path)
    assert settings.contract == DEFAULT_CONTRACT
    assert (settings.layout, settings.spoiler_leak) == ("full", "warning")
    assert settings.subject_template == "{titles}"


def test_an_editors_contract(tmp_path):
    settings = settings_from_dict(
        {
            "articles": {
                "sections": ["Setup", "Ending", "Verdict"],
                "required": ["Setup", "Ending"],
                "spoiler_free": ["Setup", "verdict"],
            },
            "issue": {"layout": "digest", "subject_template": "{lead} and {more} more"},
            "check": {"spoiler_leak": "error"},
        },
        tmp_path,
    )
    rules = [(r.heading, r.required, r.spoiler) for r in settings.contract.sections]
    assert rules == [("Setup", True, False), ("Ending", True, True), ("Verdict", False, False)]
    assert (settings.layout, settings.spoiler_leak) == ("digest", "error")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"articles": {"sections": ["A", "B"], "required": ["C"], "spoiler_free": ["A"]}},
            "[articles] required: 'C' is not one of [articles] sections",
        ),
        (
            {"articles": {"sections": ["A", "B"], "spoiler_free": []}},
            "[articles] spoiler_free: name at least one section",
        ),
        (
            {"articles": {"sections": ["A", "a "], "spoiler_free": ["A"]}},
            "[articles] sections: 'a ' is listed twice",
        ),
        ({"check": {"spoiler_leak": "loud"}}, "[check] spoiler_leak:"),
        ({"issue": {"layout": "cards"}}, "[issue] layout:"),
        (
            {"issue": {"subject_template": "{lead}: {ending}"}},
            "[issue] subject_template: unknown placeholder {ending}",
        ),
    ],
)
def test_mistakes_are_named(tmp_path, data, message):
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, tmp_path, source="newsletter.toml")
    assert str(info.value).startswith(f"newsletter.toml: {message}"), str(info.value)
