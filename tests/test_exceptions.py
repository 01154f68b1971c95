"""exceptions.py holds the whole tree: no module of the package defines an exception of its
own, and the docstring's drawing names every class in it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import newsletter
from newsletter import exceptions


def _modules():
    for info in pkgutil.walk_packages(newsletter.__path__, "newsletter."):
        if info.name.startswith(("newsletter.testing", "newsletter.migrations.")):
            continue  # the test server (an extra) and Alembic's scripts
        if info.name.endswith(".__main__"):
            continue  # runs its command when imported
        yield importlib.import_module(info.name)


def test_every_exception_of_the_package_lives_in_exceptions_py():
    elsewhere = sorted(
        f"{module.__name__}.{name}"
        for module in _modules()
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
        and module is not exceptions
    )
    assert elsewhere == []


def test_the_drawing_names_every_class_of_the_tree():
    tree = [
        name
        for name, value in vars(exceptions).items()
        if inspect.isclass(value) and issubclass(value, exceptions.NewsletterError)
    ]
    assert len(tree) > 20
    drawing = exceptions.__doc__ or ""
    assert [
        name for name in tree if not re.search(rf"(?m)^\s+(?:[│├└─ ]+)?{name}\b", drawing)
    ] == []
