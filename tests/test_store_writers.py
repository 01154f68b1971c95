"""ARCHITECTURE.md's invariant, checked on the source: only store/deliveries/ writes the
delivery log's tables -- `deliveries`, `delivery_batches`, `delivery_plans` (the delivery log
is the truth, so one module owns its writes)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

TABLES = ("deliveries", "delivery_batches", "delivery_plans")
SQL_WRITE = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(deliveries|delivery_batches|delivery_plans)\b",
    re.IGNORECASE,
)


def writes_of_deliveries(path: Path) -> list[int]:
    """Lines where `path` builds an insert/update/delete on `deliveries` (SQLAlchemy Core or
    SQL text)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("insert", "update", "delete", "pg_insert", "sqlite_insert")
            and node.args
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in TABLES
        ):
            lines.append(node.lineno)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_WRITE.search(node.value):
                lines.append(node.lineno)
    return lines


def test_only_store_deliveries_writes_the_deliveries_table():
    package = REPO / "newsletter"
    owner = package / "store" / "deliveries"
    assert all(writes_of_deliveries(path) for path in (owner / "plans.py", owner / "batches.py"))
    others = {
        str(path.relative_to(REPO)): found
        for path in package.rglob("*.py")
        if owner not in path.parents
        and "migrations" not in path.parts
        and (found := writes_of_deliveries(path))
    }
    assert others == {}
