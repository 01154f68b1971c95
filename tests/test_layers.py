"""The layering the code promises: the provider interface loads neither the database layer
nor the renderer, and database failures reach callers as meaningful exceptions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.exceptions import DatabaseUnavailable, Duplicate, ReadOnlyDatabase, StoreError
from newsletter.store import Store

REPO = Path(__file__).resolve().parents[1]


def test_provider_interface_loads_no_database_or_renderer():
    code = (
        "import newsletter.providers, sys; "
        "heavy = {'sqlalchemy', 'alembic', 'premailer'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_a_second_row_with_the_same_key_is_a_duplicate(store):
    row = {"email": "ann@example.com", "name": "Ann", "token": "t1"}
    store.subscribers.add([row])
    with pytest.raises(Duplicate, match="UNIQUE"):
        store.subscribers.add([{**row, "token": "t2"}])


def test_a_read_only_database_says_so(tmp_path):
    path = tmp_path / "newsletter.db"
    Store(f"sqlite:///{path}").close()
    read_only = Store(f"sqlite:///file:{path}?mode=ro&uri=true", create=False)
    try:
        with pytest.raises(ReadOnlyDatabase, match="readonly"):
            read_only.subscribers.add([{"email": "a@example.com", "token": "t"}])
    finally:
        read_only.close()


def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path):
    missing = tmp_path / "no-such-folder" / "newsletter.db"
    with pytest.raises(DatabaseUnavailable, match="unable to open") as caught:
        Store(f"sqlite:///{missing}")
    assert str(missing) in str(caught.value)


def test_other_failures_stay_plain_store_errors(store, settings):
    import sqlite3

    db_file = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db_file) as raw:
        raw.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON subscribers "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    with pytest.raises(StoreError, match="disk says no") as caught:
        store.subscribers.add([{"email": "a@example.com", "token": "t"}])
    assert type(caught.value) is StoreError
