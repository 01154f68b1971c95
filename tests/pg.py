"""PostgreSQL for the tests: a server for the session, a fresh database per test.

Import the fixtures into a conftest.py (or a test module) to use them:

    from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401

`postgres_url` is NEWSLETTER_TEST_POSTGRES_URL when set (a server you run; its user must be
allowed to CREATE DATABASE), else a throwaway server started with scripts/postgres in a
temporary folder for the session. If PostgreSQL cannot be had, the tests that need it are
skipped, except under CI (CI=true), where that is a failure: CI must test both backends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "postgres"
URL_VARIABLE = "NEWSLETTER_TEST_POSTGRES_URL"
# Enough for `apt-get install postgresql` on a clean machine, less than pytest-timeout.
START_TIMEOUT = 240


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL is not available: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: both backends must be tested)", pytrace=False)
    pytest.skip(message)


def _admin_engine(url: str):
    """Connections outside transactions, as CREATE/DROP DATABASE need."""
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


class _Server:
    """The session's server, shared by every copy of the fixture: importing the fixtures into
    both a conftest.py and a test module makes pytest set the session fixture up twice, and
    that must not start two servers. The last user stops it."""

    url: str | None = None
    problem: str | None = None
    folder: str | None = None
    users = 0

    @classmethod
    def acquire(cls) -> str:
        if cls.url is None and cls.problem is None:
            try:
                cls.url = cls._start()
            except _Unavailable as exc:
                cls.problem = str(exc)
        if cls.problem is not None:
            _unavailable(cls.problem)
        cls.users += 1
        return cls.url

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0:
            cls._stop()

    @classmethod
    def _start(cls) -> str:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise _Unavailable(f"the psycopg driver is not installed ({exc})") from exc
        url = os.environ.get(URL_VARIABLE)
        if url:
            _check_server(url)
            return url
        if shutil.which("bash") is None:
            raise _Unavailable("bash is needed to run scripts/postgres")
        # Not pytest's tmp_path: its parent folders are private to us, and as root the server
        # runs as the `postgres` user, who must be able to enter the folder. /tmp is open to all.
        cls.folder = tempfile.mkdtemp(prefix="newsletter-pg-")
        try:
            try:
                result = subprocess.run(
                    ["bash", str(SCRIPT), "start", cls.folder],
                    capture_output=True,
                    text=True,
                    timeout=START_TIMEOUT,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired as exc:
                raise _Unavailable(f"scripts/postgres start took over {START_TIMEOUT} s") from exc
            lines = result.stdout.strip().splitlines()
            if result.returncode != 0 or not lines:
                detail = " | ".join(result.stderr.strip().splitlines()[-5:]) or "no output"
                raise _Unavailable(f"scripts/postgres start failed: {detail}")
            _check_server(lines[-1])
            return lines[-1]
        except BaseException:
            cls._stop()
            raise

    @classmethod
    def _stop(cls) -> None:
        folder, cls.folder, cls.url = cls.folder, None, None
        if folder is None:
            return  # a server of NEWSLETTER_TEST_POSTGRES_URL is not ours to stop
        # Whatever happened, stop what may have started (a no-op when nothing did).
        subprocess.run(
            ["bash", str(SCRIPT), "stop", folder],
            capture_output=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        shutil.rmtree(folder, ignore_errors=True)


class _Unavailable(Exception):
    pass


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session (its URL names database newsletter_test)."""
    url = _Server.acquire()
    try:
        yield url
    finally:
        _Server.release()


def _check_server(url: str) -> None:
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # any failure to connect means: no PostgreSQL for these tests
        raise _Unavailable(f"cannot connect to {make_url(url).render_as_string()}: {exc}") from exc
    finally:
        engine.dispose()


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's server for one test, dropped after it."""
    base = make_url(postgres_url)
    name = f"newsletter_test_{uuid.uuid4().hex[:16]}"
    admin = _admin_engine(postgres_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            # FORCE: a connection the test leaked must not keep the database alive.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind: a SQLite file in tmp_path, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'newsletter.db'}"
    return request.getfixturevalue("fresh_postgres_url")
