"""The import contracts (pyproject.toml) name every top-level module and package of
`newsletter`: one left out would be held to no layer, free to import anything above it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Outside the layers on purpose: the test server has its own `protected` contract (only the
# CLI may import it); the wheel's data packages hold no code.
NOT_LAYERED = {"testing", "_sample", "_templates"}


def _layered() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    [main] = [c for c in contracts if c["type"] == "layers" and "containers" not in c]
    names = (name.strip() for layer in main["layers"] for name in re.split(r"[|:]", layer))
    return {name.removeprefix("newsletter.") for name in names if name}


def _top_level() -> set[str]:
    package = REPO / "newsletter"
    modules = {p.stem for p in package.glob("*.py") if not p.name.startswith("__")}
    packages = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    return (modules | packages) - NOT_LAYERED


def test_every_top_level_module_is_in_a_layer():
    missing = _top_level() - _layered()
    assert not missing, f"add to the layers contract in pyproject.toml: {sorted(missing)}"


def test_the_layers_name_no_module_that_is_gone():
    gone = _layered() - _top_level()
    assert not gone, f"the layers contract names modules that do not exist: {sorted(gone)}"


def test_every_module_of_a_layered_package_is_in_its_contract():
    """cli, publish, delivery, settings, settings.schema: a module their contract leaves out
    may import its siblings either way."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] != "layers" or "containers" not in contract:
            continue
        [container] = contract["containers"]
        folder = REPO.joinpath(*container.split("."))
        own = {p.stem for p in folder.glob("*.py") if not p.name.startswith("__")}
        own |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
        named = {n.strip() for layer in contract["layers"] for n in re.split(r"[|:]", layer)}
        missing = own - named
        assert not missing, f"{container}: add {sorted(missing)} to its contract"
