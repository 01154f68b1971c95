"""The Alembic migrations on both backends: they make exactly the store's schema, are safe to run
on every start and from several processes at once, adopt databases made before migrations,
and the Store works on what they make (PostgreSQL included)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.pool import NullPool

from newsletter import migrations
from newsletter.exceptions import StoreError
from newsletter.records import DeliveryState, RenderedIssue
from newsletter.store import Store
from newsletter.store.schema import delivery_batches, metadata, subscribers
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401

IN_FLIGHT = DeliveryState.IN_FLIGHT
PENDING = DeliveryState.PENDING
SENT = DeliveryState.SENT

OUR_TABLES = set(migrations.INITIAL_TABLES)
DDL_WORDS = ("CREATE", "ALTER", "DROP", "INSERT INTO alembic_version", "UPDATE alembic_version")


@pytest.fixture
def engine(database_url: str):  # noqa: F811
    engine = create_engine(database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def statements(engine: Engine) -> list[str]:
    """Every SQL statement the engine runs from now on."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, sql, *a: seen.append(sql))
    return seen


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def index_names(engine: Engine, table: str) -> set[str]:
    return {ix["name"] for ix in inspect(engine).get_indexes(table)}


def test_upgrade_on_an_empty_database_makes_the_schema_of_store_py(engine):
    assert migrations.current_revision(engine) is None
    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert OUR_TABLES <= tables(engine)
    assert migrations.schema_differences(engine) == []
    assert index_names(engine, "subscribers") >= {"ix_subscribers_status"}
    assert index_names(engine, "deliveries") >= {"ix_deliveries_state"}
    # The time columns are plain DateTime holding naive UTC, as UTCDateTime expects.
    columns = {c["name"]: c for c in inspect(engine).get_columns("subscribers")}
    assert "TIME ZONE" not in str(columns["created_at"]["type"]).upper()


def test_revisions_are_numbered_in_order():
    """`upgrade` trusts the highest file number to be the head (to skip importing Alembic at
    every start): `python -m newsletter.migrations revision` keeps that true."""
    assert migrations._newest_file_revision() == migrations.head_revision()


def test_upgrade_at_head_is_a_no_op(engine):
    migrations.upgrade(engine)
    seen = statements(engine)
    migrations.upgrade(engine)
    migrations.upgrade(engine, "head")
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert not [s for s in seen if any(word in s for word in DDL_WORDS)], seen
    # At head it only reads: no lock, no write transaction.
    assert not [s for s in seen if "pg_advisory" in s or "IMMEDIATE" in s], seen


def test_downgrade_to_base_then_upgrade_again(engine):
    migrations.upgrade(engine)
    migrations.downgrade(engine, "base")
    assert migrations.current_revision(engine) is None
    assert not (OUR_TABLES & tables(engine))
    migrations.upgrade(engine, migrations.INITIAL_REVISION)
    assert migrations.current_revision(engine) == migrations.INITIAL_REVISION
    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert migrations.schema_differences(engine) == []


def test_a_database_made_by_create_all_is_adopted_with_its_data(engine):
    # What code from before migrations left: create_all's tables, no alembic_version, and on
    # the oldest databases also an index that was dropped from the store's schema since.
    metadata.create_all(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_deliveries_batch ON deliveries (issue_id, batch)"))
        conn.execute(
            insert(subscribers).values(
                email="Ann@example.com",
                email_key="ann@example.com",
                name="Ann",
                status="active",
                token="t1",
                created_at=now,
                updated_at=now,
            )
        )
    assert migrations.current_revision(engine) is None

    migrations.upgrade(engine, migrations.INITIAL_REVISION)  # stamped, not run
    assert migrations.current_revision(engine) == migrations.INITIAL_REVISION
    assert "ix_deliveries_batch" in index_names(engine, "deliveries")

    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert "ix_deliveries_batch" not in index_names(engine, "deliveries")
    assert migrations.schema_differences(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(select(subscribers.c.email)) == "Ann@example.com"


def test_a_partial_schema_without_version_is_refused(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'odd.db'}", poolclass=NullPool)
    subscribers.create(engine)
    with pytest.raises(StoreError, match="some of the newsletter's tables"):
        migrations.upgrade(engine)
    assert migrations.current_revision(engine) is None
    assert tables(engine) == {"subscribers"}  # nothing half-done left behind


def test_the_scheduler_table_is_not_ours(engine):
    """APScheduler keeps its jobs in the same database: a job table it made before the
    migrations is neither counted as a sign of an old schema nor reported as a difference, and
    the migrations keep it; revision 0003 makes it when missing, and base removes it."""
    jobs = Table(
        "apscheduler_jobs",
        MetaData(),
        Column("id", String(191), primary_key=True),
        Column("next_run_time", Integer, index=True),
    )
    jobs.create(engine)
    migrations.upgrade(engine)
    assert OUR_TABLES <= tables(engine)
    assert migrations.schema_differences(engine) == []
    assert "apscheduler_jobs" in tables(engine)
    migrations.downgrade(engine, "0002")
    assert "apscheduler_jobs" not in tables(engine)
    migrations.upgrade(engine)  # made by the migrations when missing, as APScheduler 3 makes it
    assert {c["name"] for c in inspect(engine).get_columns("apscheduler_jobs")} == {
        "id",
        "next_run_time",
        "job_state",
    }
    migrations.downgrade(engine, "base")
    assert tables(engine) & (OUR_TABLES | {"apscheduler_jobs"}) == set()


def test_upgrade_through_the_store_engine_on_sqlite(tmp_path):
    """The Store's SQLite engine begins its own transactions (isolation_level None, BEGIN
    IMMEDIATE from a "begin" event): the migration runs inside one of them."""
    store = Store(f"sqlite:///{tmp_path / 'newsletter.db'}", create=False)
    try:
        seen = statements(store.engine)
        migrations.upgrade(store.engine)
        assert migrations.current_revision(store.engine) == migrations.head_revision()
        assert migrations.schema_differences(store.engine) == []
        first_create = next(i for i, s in enumerate(seen) if "CREATE TABLE" in s)
        assert "BEGIN IMMEDIATE" in seen[:first_create]
        assert "COMMIT" not in " ".join(seen[:first_create])
        assert store.subscribers.add([{"email": "a@example.com", "name": "A", "token": "t"}]) == 1
    finally:
        store.close()


def test_upgrade_through_a_plain_sqlite_engine_takes_the_write_lock(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'plain.db'}", poolclass=NullPool)
    seen = statements(engine)
    migrations.upgrade(engine)
    first_create = next(i for i, s in enumerate(seen) if "CREATE TABLE" in s)
    assert "BEGIN IMMEDIATE" in seen[:first_create]
    assert migrations.schema_differences(engine) == []


RACER = textwrap.dedent(
    """
    import sys
    from sqlalchemy import create_engine
    from newsletter import migrations
    from newsletter.store import Store

    url, use_store = sys.argv[1], sys.argv[2] == "store"
    engine = Store(url, create=False).engine if use_store else create_engine(url)
    with engine.connect():  # connected and imported: ready to race
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    migrations.upgrade(engine)
    print(migrations.current_revision(engine), flush=True)
    """
)


def test_processes_starting_together_all_succeed(database_url):  # noqa: F811
    """Several processes upgrade one new database at the same moment: one migrates, the
    others wait for its lock and then find the schema at head."""
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, database_url, "store" if i % 2 else "plain"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    try:
        for racer in racers:
            assert racer.stdout.readline().strip() == "ready", racer.stderr.read()
        for racer in racers:  # go!
            racer.stdin.write("go\n")
            racer.stdin.flush()
        results = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    head = migrations.head_revision()
    for racer, (out, err) in zip(racers, results, strict=True):
        assert racer.returncode == 0, err
        assert out.strip() == head, (out, err)
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        assert migrations.schema_differences(engine) == []
    finally:
        engine.dispose()


def test_upgrade_waits_for_the_advisory_lock_on_postgresql(fresh_postgres_url):  # noqa: F811
    engine = create_engine(fresh_postgres_url, poolclass=NullPool)
    done = threading.Event()
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            migrations.upgrade(engine)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    try:
        with engine.connect() as holder, holder.begin():
            holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": migrations.PG_LOCK_KEY})
            thread = threading.Thread(target=migrate)
            thread.start()
            time.sleep(0.5)
            assert not done.is_set(), "upgrade did not wait for the migration lock"
            assert not (OUR_TABLES & tables(engine))
        # The holder's transaction ended: the lock is free.
        assert done.wait(30)
        thread.join()
        assert not errors, errors
        assert migrations.current_revision(engine) == migrations.head_revision()
    finally:
        engine.dispose()


def test_the_store_works_on_what_the_migrations_make(database_url):  # noqa: F811
    """A few calls of each kind through the real Store; on PostgreSQL this checks the store's
    SQL is not SQLite-only (RETURNING, INSERT .. SELECT with literals, FOR UPDATE SKIP LOCKED,
    savepoints after an IntegrityError, naive-UTC timestamps)."""
    store = Store(database_url)
    try:
        migrations.upgrade(store.engine)  # adopts create_all's schema if Store() still makes it
        assert migrations.current_revision(store.engine) == migrations.head_revision()

        rows = [
            {"email": f"r{i}@example.com", "name": f"Reader {i}", "token": f"tok{i}"}
            for i in range(5)
        ]
        assert store.subscribers.add(rows) == 5
        assert store.subscribers.count() == 5
        article = store.articles.add_article("001_first.txt", "First", None)
        issue = store.issues.create_issue(
            RenderedIssue(
                slug="first",
                subject="First",
                preheader="p",
                html="<p>x</p>",
                text="x",
                archive_html="<p>x</p>",
                placeholder_nonce="n0nce",
                view_url="",
            ),
            [article],
            datetime(2030, 1, 6, 9, 0, tzinfo=UTC),
        )
        assert store.deliveries.counts(issue)[PENDING] == 5
        assert store.issues.get_issue(issue).scheduled_for == datetime(2030, 1, 6, 9, 0, tzinfo=UTC)

        first = store.deliveries.claim(issue, 3, worker="w1")
        second = store.deliveries.claim(issue, 3, worker="w2")
        assert (first.number, second.number) == (1, 2)
        assert len(first.recipients) == 3 and len(second.recipients) == 2
        first_ids = {r.subscriber_id for r in first.recipients}
        assert first_ids.isdisjoint(r.subscriber_id for r in second.recipients)
        assert store.deliveries.claim(issue, 3) is None
        assert store.deliveries.mark_sent(first, "msg-1") == 3
        assert (
            store.deliveries.mark_sent(
                second,
                {r.subscriber_id: f"m{r.subscriber_id}" for r in second.recipients},
            )
            == 2
        )
        counts = store.deliveries.counts(issue)
        assert counts[SENT] == 5 and counts[IN_FLIGHT] == 0
        with store.engine.connect() as conn:
            attempts = set(conn.scalars(select(delivery_batches.c.attempts)))
        assert attempts == {1}

        ttl = timedelta(minutes=5)
        assert store.meta.acquire("sender", "host-a", ttl) is True
        assert store.meta.acquire("sender", "host-b", ttl) is False
        assert store.meta.acquire("sender", "host-a", ttl) is True  # renewal
        holder, expires = store.meta.holder("sender")
        assert holder == "host-a" and expires.tzinfo is not None

        assert store.events.first_time("evt-1") is True
        assert store.events.first_time("evt-1") is False
        assert store.events.first_time("evt-2") is True
        assert store.meta.secret_key() == store.meta.secret_key()
    finally:
        store.close()


def test_editor_sessions_and_import_jobs_up_and_down_with_data(engine):
    """0009 (server-side editor sessions, ids never reused) and 0010 (import jobs) on a
    database with editors in it, both ways: the rows keep their ids, a removed editor's id is
    never given again after 0009 (SQLite's AUTOINCREMENT, PostgreSQL's sequence), and
    downgrading gives 0008's `session_version` back."""
    migrations.upgrade(engine, "0008")
    now = datetime(2026, 12, 1, 9, 0)
    with engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO editors (email, email_key, password_hash, session_version, "
                    "timezone, created_at, updated_at) VALUES (:e, :e, 'h', 4, '', :t, :t)"
                ),
                {"e": f"ed{n}@example.com", "t": now},
            )
    migrations.upgrade(engine, "0009")
    assert migrations.current_revision(engine) == "0009"
    columns = {c["name"] for c in inspect(engine).get_columns("editors")}
    assert "session_version" not in columns
    assert "editor_sessions" in tables(engine)
    with engine.begin() as conn:
        kept = conn.execute(text("SELECT id, email FROM editors ORDER BY id")).all()
        assert [tuple(r) for r in kept] == [(n, f"ed{n}@example.com") for n in (1, 2, 3)]
        conn.execute(
            text(
                "INSERT INTO editor_sessions (id_hash, editor_id, created_at, seen_at) "
                "VALUES ('s3', 3, :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(text("DELETE FROM editor_sessions WHERE editor_id = 3"))
        conn.execute(text("DELETE FROM editors WHERE id = 3"))
        conn.execute(
            text(
                "INSERT INTO editors (email, email_key, password_hash, timezone, created_at, "
                "updated_at) VALUES ('new@example.com', 'new@example.com', 'h', '', :t, :t)"
            ),
            {"t": now},
        )
        assert conn.scalar(text("SELECT id FROM editors WHERE email = 'new@example.com'")) == 4

    migrations.upgrade(engine)  # 0010 and whatever follows
    assert "import_jobs" in tables(engine)
    assert "ix_import_jobs_state" in index_names(engine, "import_jobs")
    assert migrations.schema_differences(engine) == []
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO import_jobs (editor, filename, state, rows_done, added, updated, "
                "skipped, attempts, created_at) "
                "VALUES ('ed1@example.com', 'list.csv', 'queued', 0, 0, 0, 0, 0, :t)"
            ),
            {"t": now},
        )

    migrations.downgrade(engine, "0009")
    assert "import_jobs" not in tables(engine)
    migrations.downgrade(engine, "0008")
    assert "editor_sessions" not in tables(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, session_version FROM editors ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, 1), (2, 1), (4, 1)]
    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert migrations.schema_differences(engine) == []
