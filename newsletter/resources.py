"""Where the built-in email templates and the bundled sample are, however newsletter is installed.

The templates and the sample articles live at the top of the repository (`templates/`,
`issues/`), where an editor looks for them; pyproject.toml maps them into the package as
`newsletter._templates` and `newsletter._sample`, so a wheel carries them and an editable
install finds them through the same import machinery. `issues/` holds only what an editor's
folder holds (articles: no `__init__.py`, so `newsletter._sample` is a namespace package); the
sample subscribers are package data beside this module.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
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
    """The bundled sample articles (`issues/` in the repository: articles only)."""
    try:
        spec = importlib.util.find_spec("newsletter._sample")
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return _SOURCE_TREE / "issues"  # a checkout that was never installed (PYTHONPATH=.)
    return Path(next(iter(spec.submodule_search_locations)))


def sample_articles() -> list[Path]:
    """The bundled sample articles, in queue order."""
    return sorted(p for p in sample_folder().iterdir() if p.suffix in ARTICLE_SUFFIXES)


def sample_subscribers() -> Path:
    """The bundled sample subscribers, a CSV file `init --sample` imports."""
    return Path(__file__).resolve().parent / "sample_subscribers.csv"
