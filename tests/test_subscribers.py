import csv
import io
import os
import stat
from pathlib import Path

import pytest
from email_validator import EmailNotValidError

from newsletter.addresses import normalize_address
from newsletter.records import SubscriberStatus
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.subscribers import (
    add_subscriber,
    export_csv,
    from_spreadsheet,
    import_csv,
    import_csv_chunked,
    mailbox_key,
    signing_secret,
    spreadsheet_safe,
)
from newsletter.tokens import verify_token
from tests.conftest import run_cli, write

ACTIVE = SubscriberStatus.ACTIVE
BOUNCED = SubscriberStatus.BOUNCED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
COMPLAINED = SubscriberStatus.COMPLAINED
UNCONFIRMED = SubscriberStatus.UNCONFIRMED


def _csv(tmp_path, body: bytes):
    path = tmp_path / "list.csv"
    path.write_bytes(body)
    return path


def test_import_validates_every_row_and_reports_line_numbers(tmp_path, store):
    path = _csv(
        tmp_path,
        b"\xef\xbb\xbfemail,name\r\n"
        b"ann@example.com,Ann\r\n"
        b"not-an-address,Bad\r\n"
        b"ANN@Example.com,Ann Again\r\n"
        b'"bob@example.org","Bob ""The Builder"", Jr."\r\n'
        b'carl@example.net,"Carl\r\nBcc: evil@example.com"\r\n',
    )
    result = import_csv(store, path)
    assert result.imported == 3
    problems = {p.line: p.message for p in result.problems}
    assert set(problems) == {3, 4}
    assert "invalid address" in problems[3]
    assert "duplicate of line 2" in problems[4]
    rows = {r.email: r for r in store.subscribers.each()}
    assert rows["bob@example.org"].name == 'Bob "The Builder", Jr.'
    assert rows["carl@example.net"].name == "Carl Bcc: evil@example.com"  # no CR/LF kept
    assert all(r.status == ACTIVE for r in rows.values())


def test_tokens_are_signed_opaque_and_not_the_address(tmp_path, store):
    import_csv(store, _csv(tmp_path, b"email,name\nann@example.com,Ann\n"))
    row = store.subscribers.by_email("ann@example.com")
    assert "ann" not in row.token and "example" not in row.token
    secret = signing_secret(store)
    assert verify_token(secret, row.token)
    assert not verify_token(secret, row.token[:-2] + "xx")
    assert not verify_token(secret, row.token.split(".")[0])


def test_import_never_resubscribes_suppressed_addresses(tmp_path, store):
    import_csv(store, _csv(tmp_path, b"email,name\nann@example.com,Ann\nbob@example.com,Bob\n"))
    store.subscribers.suppress("ann@example.com", UNSUBSCRIBED)
    store.subscribers.suppress("bob@example.com", BOUNCED)
    result = import_csv(
        store, _csv(tmp_path, b"email,name\nAnn@example.com,Ann\nbob@example.com,B\n")
    )
    assert result.imported == 0 and len(result.skipped) == 2
    assert store.subscribers.by_email("ann@example.com").status == UNSUBSCRIBED
    assert store.subscribers.by_email("bob@example.com").status == BOUNCED


def test_import_is_one_transaction(tmp_path, store, settings):
    """A database failure part-way through leaves no half-imported list behind."""
    import sqlite3

    import pytest

    from newsletter.exceptions import StoreError

    import_csv(store, _csv(tmp_path, b"email,name\nfirst@example.com,F\n"))
    db_file = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db_file) as raw:  # the database itself refuses row 30
        raw.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON subscribers "
            "WHEN NEW.email = 'user30@example.com' BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    path = _csv(
        tmp_path,
        b"email,name\n" + b"".join(f"user{i}@example.com,User {i}\n".encode() for i in range(50)),
    )
    with pytest.raises(StoreError, match="disk says no"):
        import_csv(store, path)
    assert store.subscribers.count() == 1


def test_export_neutralises_formulas(store, tmp_path):
    import_csv(
        store,
        _csv(
            tmp_path, b'email,name\nann@example.com,"=HYPERLINK(""x"")"\nbob@example.com,+1 555\n'
        ),
    )
    out = io.StringIO()
    assert export_csv(store.subscribers.each(), out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["name"] == '\'=HYPERLINK("x")'
    assert rows[1]["name"] == "'+1 555"
    assert rows[0]["status"] == "active"
    assert spreadsheet_safe("@SUM(A1)") == "'@SUM(A1)" and spreadsheet_safe("plain") == "plain"


# -- moving a list: export, then import into a new database ------------------------------------

TRICKY = [
    # (address, name, status)
    ("ann@example.com", "Ann Archer", ACTIVE),
    ("-dash@example.com", "-minus", UNSUBSCRIBED),
    ("+plus@example.com", "+1 555 0100", BOUNCED),
    ("=eq@example.com", "=SUM(A1)", COMPLAINED),
    ("'quote@example.com", "'Quoted", UNCONFIRMED),
    ("bob@example.org", 'Bob "The Builder", Jr.', ACTIVE),
    ("zoe@example.net", "''=twice", UNSUBSCRIBED),
    ("at@example.net", "@handle", ACTIVE),
    ("eve@example.net", '\'=HYPERLINK("x")', BOUNCED),
    ("uma@example.net", "Zoë Ünal", UNCONFIRMED),
]


def _rows(store) -> dict[str, tuple[str, str, str]]:
    return {
        r.email: (r.name, str(r.status), r.created_at.isoformat()) for r in store.subscribers.each()
    }


def test_export_then_import_into_a_new_database_keeps_every_status_and_name(tmp_path):
    """`subscribers export` writes what `subscribers import` reads back, exactly: nobody who
    left (or never confirmed) is made active by moving the list, and no value changes."""
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        folder.mkdir()
        assert run_cli(["init", "."], folder).returncode == 0
    source = Store(load_settings(old / "newsletter.toml", env={}).database_url)
    try:
        for address, name, status in TRICKY:
            add_subscriber(source, address, name, status=status)
        before = _rows(source)
    finally:
        source.close()
    assert {a: s for a, (_, s, _) in before.items()} == {a: s for a, _, s in TRICKY}

    out = run_cli(["subscribers", "export", "--out", str(tmp_path / "list.csv")], old)
    assert out.returncode == 0, out.stderr
    exported = {r["email"]: r for r in csv.DictReader((tmp_path / "list.csv").open())}
    # Still safe to open in a spreadsheet: formula cells carry a leading apostrophe.
    assert "'-dash@example.com" in exported and "'=eq@example.com" in exported
    assert exported["'=eq@example.com"]["name"] == "'=SUM(A1)"

    out = run_cli(["subscribers", "import", str(tmp_path / "list.csv")], new)
    assert out.returncode == 0, out.stderr
    assert f"imported {len(TRICKY)}, updated 0, rejected 0, skipped 0" in out.stdout
    target = Store(load_settings(new / "newsletter.toml", env={}).database_url)
    try:
        assert _rows(target) == before
        # Importing the same file again changes nothing.
        again = run_cli(["subscribers", "import", str(tmp_path / "list.csv")], new)
        assert again.returncode == 0 and "skipped 0" in again.stdout, again.stdout
        assert _rows(target) == before
    finally:
        target.close()


def test_import_never_reactivates_without_the_flag_but_applies_suppressions(tmp_path):
    assert run_cli(["init", "."], tmp_path).returncode == 0
    store = Store(load_settings(tmp_path / "newsletter.toml", env={}).database_url)
    try:
        for address, name, status in TRICKY:
            add_subscriber(store, address, name, status=status)
        # A plain list (no status column) naming everyone: known people keep their status.
        plain = "email,name\n" + "".join(f"{a},x\n" for a, _, _ in TRICKY[1:5])
        write(tmp_path / "plain.csv", plain.replace("-dash", "'-dash").replace("+plus", "'+plus"))
        out = run_cli(["subscribers", "import", "plain.csv"], tmp_path)
        assert out.returncode == 0, out.stderr
        assert "imported 0, updated 0, rejected 0, skipped 4" in out.stdout
        assert "--reactivate" in out.stderr
        assert [store.subscribers.by_email(a).status for a, _, _ in TRICKY[1:5]] == [
            UNSUBSCRIBED,
            BOUNCED,
            COMPLAINED,
            UNCONFIRMED,
        ]
        # A suppression in the file is applied to an active subscriber; a bounce is never
        # softened into an unsubscribe.
        write(
            tmp_path / "left.csv",
            "email,name,status\nann@example.com,Ann Archer,unsubscribed\n"
            "'+plus@example.com,+1 555 0100,unsubscribed\n",
        )
        out = run_cli(["subscribers", "import", "left.csv"], tmp_path)
        assert out.returncode == 0 and "updated 2" in out.stdout, out.stdout + out.stderr
        assert store.subscribers.by_email("ann@example.com").status == UNSUBSCRIBED
        assert store.subscribers.by_email("+plus@example.com").status == BOUNCED
        # The editor's explicit decision.
        write(tmp_path / "back.csv", "email,name,status\nann@example.com,Ann Archer,active\n")
        out = run_cli(["subscribers", "import", "back.csv"], tmp_path)
        assert "skipped 1" in out.stdout
        assert store.subscribers.by_email("ann@example.com").status == UNSUBSCRIBED
        out = run_cli(["subscribers", "import", "--reactivate", "back.csv"], tmp_path)
        assert out.returncode == 0 and "updated 1" in out.stdout, out.stdout + out.stderr
        assert store.subscribers.by_email("ann@example.com").status == ACTIVE
    finally:
        store.close()


def test_spreadsheet_escaping_is_undone_exactly():
    for text in ["-dash", "'quoted", "''=x", "'=x", "=SUM(A1)", "plain", "", "'", "@"]:
        assert from_spreadsheet(spreadsheet_safe(text)) == text
    # A hand-made file: an apostrophe not put there by export stays.
    assert from_spreadsheet("'Quoted") == "'Quoted"


# -- CSV quoting errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, line",
    [
        # The quote opened on line 3 closes on line 5: rows 4 and 5 would become Bob's name.
        (
            'email,name\nann@example.com,Ann\nbob@example.com,"Bob\n'
            'carl@example.com,Carl\ndora@example.com,Dora"\neve@example.com,Eve\n',
            3,
        ),
        # Never closed at all.
        ('email,name\nann@example.com,Ann\nbob@example.com,"Bob\ncarl@example.com,Carl\n', 3),
        # Text after a closing quote.
        ('email,name\nann@example.com,Ann\nbob@example.com,"Bob" Jr\n', 3),
    ],
)
def test_a_quoting_error_is_reported_by_line_and_nothing_is_imported(tmp_path, body, line):
    assert run_cli(["init", "."], tmp_path).returncode == 0
    write(tmp_path / "list.csv", body)
    out = run_cli(["subscribers", "import", "list.csv"], tmp_path)
    assert out.returncode == 1
    assert f"list.csv:{line}: CSV quoting error" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    listing = run_cli(["subscribers", "list"], tmp_path)
    assert listing.returncode == 0 and listing.stdout == ""


# -- one address check for sign-up, import and send ---------------------------------------------


def test_one_address_check_for_sign_up_and_import(tmp_path, store):
    """Internationalised local parts are accepted (SMTPUTF8, see normalize_address); every
    address with an ASCII local part is stored all-ASCII, its domain in IDNA form."""
    path = _csv(
        tmp_path,
        "email,name\nδοκιμή@example.com,G\nann@bücher.example,Ann\nbob@@example.com,Bob\n".encode(),
    )
    result = import_csv(store, path)
    assert result.imported == 2
    assert [p.line for p in result.problems] == [4]
    assert store.subscribers.by_email("δοκιμή@example.com").name == "G"
    assert store.subscribers.by_email("ann@xn--bcher-kva.example").name == "Ann"
    assert normalize_address("Ann@Bücher.Example") == "Ann@xn--bcher-kva.example"
    with pytest.raises(EmailNotValidError):
        normalize_address("ann@bücher.example\r\nBcc: x@example.com")
    assert mailbox_key("Victim+1@Example.COM") == mailbox_key("victim@example.com")


# -- the database file ---------------------------------------------------------------------------


def test_a_new_sqlite_database_and_its_wal_files_are_private(tmp_path):
    path = tmp_path / "private.db"
    old_umask = os.umask(0o022)
    try:
        store = Store(f"sqlite:///{path}")
        try:
            add_subscriber(store, "ann@example.com", "Ann")
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
                f.name: 0o600 for f in files
            }
        finally:
            store.close()
    finally:
        os.umask(old_umask)
    # Through the command line too.
    (tmp_path / "cli").mkdir()
    assert run_cli(["init", "."], tmp_path / "cli").returncode == 0
    out = run_cli(["subscribers", "list"], tmp_path / "cli")
    assert out.returncode == 0
    assert stat.S_IMODE((tmp_path / "cli" / "newsletter.db").stat().st_mode) == 0o600


# -- chunked import (the workspace's path for large files) ---------------------------------------


def test_a_chunked_import_reports_what_the_one_transaction_import_does(tmp_path, store):
    body = (
        b"\xef\xbb\xbfemail,name,status\r\n"
        b"ann@example.com,Ann,active\r\n"
        b"not-an-address,Bad,active\r\n"
        b"ANN@Example.com,Ann Again,active\r\n"
        b"bob@example.org,Bob,bounced\r\n"
        b"carl@example.net,Carl,nonsense\r\n"
        b"dora@example.net,Dora,\r\n"
        b"eve@example.net,Eve,unsubscribed\r\n"
    )
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    expected = import_csv(other, _csv(tmp_path, body))
    seen = []
    result = import_csv_chunked(store, _csv(tmp_path, body), chunk=2, progress=seen.append)
    assert (result.imported, result.updated) == (expected.imported, expected.updated) == (4, 0)
    assert [str(p) for p in result.problems] == [str(p) for p in expected.problems]
    assert {p.line for p in result.problems} == {3, 4, 6}
    statuses = {r.email: r.status for r in store.subscribers.each()}
    assert statuses == {r.email: r.status for r in other.subscribers.each()}
    assert [s.written for s in seen] == [2, 4, 4] and all(s.rows == 7 for s in seen)


def test_a_chunked_import_lets_other_writers_in_between_chunks(tmp_path, store):
    path = _csv(
        tmp_path,
        b"email,name\n" + b"".join(f"user{i}@example.com,U\n".encode() for i in range(10)),
    )
    # A sign-up from inside the progress callback: it would wait on the import's transaction
    # if the whole file were written in one.
    signups = iter(f"signup{i}@example.com" for i in range(10))
    result = import_csv_chunked(
        store, path, chunk=3, progress=lambda _: add_subscriber(store, next(signups))
    )
    assert result.imported == 10
    assert store.subscribers.count() == 10 + 4  # three full chunks and the last one


def test_a_chunked_import_refuses_a_quoting_error_before_writing_anything(tmp_path, store):
    rows = b"".join(f"user{i}@example.com,U\n".encode() for i in range(20))
    path = _csv(tmp_path, b"email,name\n" + rows + b'late@example.com,"Late\n' + rows)
    from newsletter.exceptions import NewsletterError

    with pytest.raises(NewsletterError, match=r"list.csv:22: CSV quoting error"):
        import_csv_chunked(store, path, chunk=1)
    assert store.subscribers.count() == 0


def test_a_semicolon_csv_from_excel_imports_with_or_without_bom(tmp_path):
    """Excel's "CSV" where the decimal mark is a comma (most of Europe) separates with
    semicolons; names keep their commas."""
    assert run_cli(["init", str(tmp_path)], tmp_path).returncode == 0
    rows = 'email;name;status\r\nann@example.com;"Archer, Ann";active\r\nbob@example.com;Bob;unsubscribed\r\n'
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + rows.encode("utf-8"))
    (tmp_path / "plain.csv").write_text(rows.replace("ann@", "cy@").replace("bob@", "di@"))
    for name in ("bom.csv", "plain.csv"):
        done = run_cli(["subscribers", "import", name], tmp_path)
        assert done.returncode == 0, done.stderr
    listing = run_cli(["subscribers", "list"], tmp_path).stdout
    assert "Archer, Ann" in listing and "cy@example.com" in listing
    store = Store(load_settings(tmp_path / "newsletter.toml", env={}).database_url)
    try:
        assert store.subscribers.by_email("bob@example.com").status == "unsubscribed"
        assert store.subscribers.by_email("di@example.com").status == "unsubscribed"
    finally:
        store.close()


def test_a_header_without_email_names_the_delimiter_it_was_read_with(tmp_path):
    assert run_cli(["init", str(tmp_path)], tmp_path).returncode == 0
    (tmp_path / "odd.csv").write_text("address;name\nann@example.com;Ann\n")
    done = run_cli(["subscribers", "import", "odd.csv"], tmp_path)
    assert done.returncode == 1
    assert "no 'email' column" in done.stderr and "';' (semicolon)" in done.stderr
    assert "Traceback" not in done.stderr


def test_export_then_import_keeps_tags_and_time_zones(tmp_path):
    """Issue 23 and 24: the `tags` and `timezone` columns go out and come back. A name with
    a comma and several tags in one quoted cell survive; a tag with a comma in its quotes is
    refused by line, not split into columns."""
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        folder.mkdir()
        assert run_cli(["init", "."], folder).returncode == 0
    source = _csv(
        tmp_path,
        b"email,name,timezone,tags\r\n"
        b'a@example.org,"Doe, Ann",Asia/Tokyo,"films horror"\r\n'
        b"b@example.org,Bo,,films\r\n"
        b"c@example.org,Cy,America/New_York,\r\n",
    )
    first = run_cli(["subscribers", "import", str(source)], old)
    assert first.returncode == 0 and "imported 3" in first.stdout, first.stdout + first.stderr
    out = tmp_path / "export.csv"
    done = run_cli(["subscribers", "export", "--out", str(out)], old)
    assert done.returncode == 0, done.stderr
    exported = {r["email"]: r for r in csv.DictReader(out.open(newline=""))}
    assert exported["a@example.org"]["tags"] == "films horror"
    assert exported["a@example.org"]["name"] == "Doe, Ann"
    assert exported["a@example.org"]["timezone"] == "Asia/Tokyo"
    assert exported["b@example.org"]["tags"] == "films"
    assert (exported["c@example.org"]["tags"], exported["c@example.org"]["timezone"]) == (
        "",
        "America/New_York",
    )

    again = run_cli(["subscribers", "import", str(out)], new)
    assert again.returncode == 0 and "imported 3" in again.stdout, again.stdout + again.stderr
    target = Store(load_settings(new / "newsletter.toml", env={}).database_url)
    try:
        people = {s.email: s for s in target.subscribers.each()}
        tags = target.tags.of(s.id for s in people.values())
        assert {e: tags.get(s.id, []) for e, s in people.items()} == {
            "a@example.org": ["films", "horror"],
            "b@example.org": ["films"],
            "c@example.org": [],
        }
        assert {e: s.timezone for e, s in people.items()} == {
            "a@example.org": "Asia/Tokyo",
            "b@example.org": "",
            "c@example.org": "America/New_York",
        }
        assert dict(target.tags.counts()) == {"films": 2, "horror": 1}
    finally:
        target.close()
    # The comma inside quotes: the row is refused by its line, the other columns unmoved.
    bad = _csv(tmp_path, b'email,tags,name\r\nd@example.org,"films,horror",Di\r\n')
    refused = run_cli(["subscribers", "import", str(bad)], new)
    assert "line 2: d@example.org: tags: 'films,horror' holds a comma" in refused.stdout + (
        refused.stderr
    )


def test_export_csv_writes_the_tags_column_a_block_at_a_time(store):
    for n in range(3):
        add_subscriber(store, f"t{n}@example.org", f"T{n}")
    ids = [s.id for s in store.subscribers.each()]
    store.tags.tag([f"t{n}@example.org" for n in (0, 2)], "films")
    out = io.StringIO()
    assert export_csv(store.subscribers.each(), out, tags_of=store.tags.of) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["tags"] for r in rows] == ["films", "", "films"] and len(ids) == 3
