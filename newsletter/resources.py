"""Where the built-in email templates and the bundled sample are, however newsletter is installed.

They live at the top of the repository (`templates/`, `issues/`), where an editor looks for them;
pyproject.toml maps them into the package as `newsletter._templates` and `newsletter._sample`, so
a wheel carries them and an editable install finds them through the same import machinery.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_SOURCE_TREE = Path(__file__).resolve().parent.parent
ARTICLE_SUFFIXES = (".txt", ".md")


def _folder(package: str, source_name: str) -> Path:
    """A real folder (Jinja and shutil need paths): the installed package's, else the checkout's."""
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        # Run from a checkout that was never installed (PYTHONPATH=.): the folders are right here.
        return _SOURCE_TREE / source_name


def builtin_templates() -> Path:
    """The built-in email templates (`templates/` in the repository)."""
    return _folder("newsletter._templates", "templates")


def sample_folder() -> Path:
    """The bundled sample queue and subscribers (`issues/` in the repository)."""
    return _folder("newsletter._sample", "issues")


def sample_articles() -> list[Path]:
    """The bundled sample articles, in queue order."""
    return sorted(p for p in sample_folder().iterdir() if p.suffix in ARTICLE_SUFFIXES)


def sample_subscribers() -> Path:
    return sample_folder() / "subscribers.csv"
