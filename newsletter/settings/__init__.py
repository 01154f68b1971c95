"""newsletter.toml: what the code reads (`values`), the file's schema and every default
(`schema`), reading it with the environment (`load`), and rewriting a key of it (`edit`).

Imports run one way: values <- schema <- load <- edit (import-linter holds it). This module is
the surface callers use. The records and the loader are imported at once (standard library
only); the schema's and the editor's names on first use, so importing a record never loads
pydantic or tomlkit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from newsletter.settings.load import (
    CONFIG_NAME,
    ENV_OVERRIDES,
    find_config,
    load_settings,
    secret,
    settings_from_dict,
    write_default_config,
)
from newsletter.settings.values import (
    Approval,
    BouncesSettings,
    DeliverySettings,
    Feed,
    Schedule,
    SendGridSettings,
    Settings,
    SMTPSettings,
)

if TYPE_CHECKING:
    from newsletter.settings.edit import update_cadence
    from newsletter.settings.schema import (
        EXAMPLE_POSTAL_ADDRESS,
        MAX_ARTICLES_PER_ISSUE,
        SettingsFile,
        Weekday,
        default_toml,
    )

_LAZY = {
    "update_cadence": "newsletter.settings.edit",
    "EXAMPLE_POSTAL_ADDRESS": "newsletter.settings.schema",
    "MAX_ARTICLES_PER_ISSUE": "newsletter.settings.schema",
    "SettingsFile": "newsletter.settings.schema",
    "Weekday": "newsletter.settings.schema",
    "default_toml": "newsletter.settings.schema",
}

__all__ = [
    "CONFIG_NAME",
    "ENV_OVERRIDES",
    "EXAMPLE_POSTAL_ADDRESS",
    "MAX_ARTICLES_PER_ISSUE",
    "BouncesSettings",
    "DeliverySettings",
    "SMTPSettings",
    "Approval",
    "Feed",
    "Schedule",
    "SendGridSettings",
    "Settings",
    "SettingsFile",
    "Weekday",
    "default_toml",
    "find_config",
    "load_settings",
    "secret",
    "settings_from_dict",
    "update_cadence",
    "write_default_config",
]


def __getattr__(name: str) -> Any:
    """The schema's and the editor's names, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
