import csv
import io

from newsletter.records import SubscriberStatus
from newsletter.subscribers import export_csv, import_csv, signing_secret, spreadsheet_safe
from newsletter.tokens import verify_token

ACTIVE = SubscriberStatus.ACTIVE
BOUNCED = SubscriberStatus.BOUNCED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED


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
