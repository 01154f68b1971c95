"""Reader-time delivery's pure parts: IANA names held in the CSV import and the sign-up form
(a real SQLite file, a live server, the real CLI), and the audience grouped by the UTC
instant of each reader's local 08:00 (zones sharing an offset share a wave)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from newsletter.readertime import next_local, parse_deliver_at, waves, zone_name
from newsletter.settings import load_settings, write_default_config
from newsletter.store import Store
from newsletter.subscribers import add_subscriber, export_csv, import_csv
from tests.conftest import run_cli, write
from tests.test_web import assert_only_the_zone_script, live_web

PARIS = ZoneInfo("Europe/Paris")
EIGHT = time(8, 0)


def test_zone_names_are_iana_names_in_their_own_spelling():
    assert zone_name("Europe/Paris") == "Europe/Paris"
    assert zone_name("  america/new_york ") == "America/New_York"
    assert zone_name("") == ""
    for bad in ("Mars/Olympus", "Europe/../etc/passwd", "+02:00", "x" * 500):
        with pytest.raises(ValueError, match="unknown time zone .*expected an IANA name"):
            zone_name(bad)


def test_deliver_at_reads_local_hh_mm():
    assert parse_deliver_at("local 08:00") == EIGHT
    assert parse_deliver_at("LOCAL 7:30") == time(7, 30)
    for bad in ("08:00", "local 25:00", "local 8", "utc 08:00"):
        with pytest.raises(ValueError, match="expected 'local HH:MM'"):
            parse_deliver_at(bad)


def test_the_audience_goes_out_in_as_few_waves_as_its_zones_need():
    after = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    audience = [
        (1, "Europe/Paris"),
        (2, "America/New_York"),
        (3, ""),  # the newsletter's zone: Paris
        (4, "Europe/Berlin"),  # the same offset as Paris in December: the same wave
        (5, "Asia/Kolkata"),  # its 08:00 today has passed (02:30 UTC): tomorrow's
        (6, "Europe/Paris"),
    ]
    found = waves(audience, after, EIGHT, PARIS)
    assert [(w.at, w.subscriber_ids, w.zones) for w in found] == [
        (
            datetime(2026, 12, 7, 7, 0, tzinfo=UTC),
            (1, 3, 4, 6),
            ("", "Europe/Berlin", "Europe/Paris"),
        ),
        (datetime(2026, 12, 7, 13, 0, tzinfo=UTC), (2,), ("America/New_York",)),
        (datetime(2026, 12, 8, 2, 30, tzinfo=UTC), (5,), ("Asia/Kolkata",)),
    ]
    assert waves([], after, EIGHT, PARIS) == []
    with pytest.raises(ValueError, match="aware"):
        waves(audience, datetime(2026, 12, 7, 6, 0), EIGHT, PARIS)


def test_local_eight_follows_daylight_saving_time():
    # Paris moves to summer time on 28 March 2027: 08:00 is 07:00 UTC before, 06:00 after.
    assert next_local(datetime(2027, 3, 27, 0, 0, tzinfo=UTC), EIGHT, PARIS) == datetime(
        2027, 3, 27, 7, 0, tzinfo=UTC
    )
    assert next_local(datetime(2027, 3, 28, 0, 0, tzinfo=UTC), EIGHT, PARIS) == datetime(
        2027, 3, 28, 6, 0, tzinfo=UTC
    )
    # Exactly at a reader's 08:00 counts as that 08:00.
    at = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert next_local(at, EIGHT, PARIS) == at


def test_the_csv_timezone_column_is_validated_by_line_and_round_trips(tmp_path):
    write_default_config(tmp_path)
    settings = load_settings(tmp_path / "newsletter.toml")
    store = Store(settings.database_url)
    add_subscriber(store, "known@example.com", "Known")
    csv_file = write(
        tmp_path / "readers.csv",
        "email,name,timezone\n"
        "ana@example.com,Ana,America/Sao_Paulo\n"
        "raj@example.com,Raj,asia/kolkata\n"
        "bad@example.com,Bad,Mars/Olympus\n"
        "none@example.com,None,\n"
        "known@example.com,Known,Europe/Lisbon\n",
    )
    result = import_csv(store, csv_file)
    assert [str(p) for p in result.problems] == [
        "line 4: bad@example.com: unknown time zone 'Mars/Olympus': expected an IANA name "
        "such as Europe/Paris"
    ]
    zones = {s.email: s.timezone for s in store.subscribers.each()}
    assert zones == {
        "known@example.com": "Europe/Lisbon",
        "ana@example.com": "America/Sao_Paulo",
        "raj@example.com": "Asia/Kolkata",
        "none@example.com": "",
    }
    out = tmp_path / "out.csv"
    with out.open("w", newline="", encoding="utf-8") as handle:
        export_csv(store.subscribers.each(), handle)
    assert out.read_text().splitlines()[0] == "email,name,status,created_at,timezone,tags"
    again = Store(f"sqlite:///{tmp_path / 'again.db'}")
    assert import_csv(again, out).problems == []
    assert {s.email: s.timezone for s in again.subscribers.each()} == zones
    # The command line names the file's line, as for any other bad cell.
    run = run_cli(["subscribers", "import", str(csv_file)], tmp_path)
    assert "line 4: bad@example.com: unknown time zone 'Mars/Olympus'" in run.stdout + run.stderr


def test_the_sign_up_form_takes_an_iana_zone_and_names_a_wrong_one(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as web:
        form = web.get("/subscribe")
        assert 'id="timezone" name="timezone"' in form.text
        assert_only_the_zone_script(web, form)  # without it, the field is typed by hand
        wrong = web.post_form(
            "/subscribe", {"email": "kai@example.com", "name": "Kai", "timezone": "Mars/Olympus"}
        )
        assert wrong.status == 400
        assert 'id="timezone-error"' in wrong.text and "unknown time zone" in wrong.text
        assert 'value="kai@example.com"' in wrong.text  # nothing typed is lost
        assert web.store.subscribers.by_email("kai@example.com") is None
        right = web.post_form(
            "/subscribe", {"email": "kai@example.com", "name": "Kai", "timezone": "asia/tokyo"}
        )
        assert right.status == 200
        assert web.store.subscribers.by_email("kai@example.com").timezone == "Asia/Tokyo"
        plain = web.post_form("/subscribe", {"email": "lee@example.com"})
        assert (
            plain.status == 200 and web.store.subscribers.by_email("lee@example.com").timezone == ""
        )
        # A zone the browser filled in (the script sets the hidden field to the same value)
        # that this server does not know is dropped, not refused: the reader did not choose it.
        filled = {"email": "mo@example.com", "timezone": "Mars/Olympus"}
        dropped = web.post_form("/subscribe", {**filled, "timezone_detected": "Mars/Olympus"})
        assert dropped.status == 200
        assert web.store.subscribers.by_email("mo@example.com").timezone == ""
        # One typed over the browser's is the reader's own: refused, the browser's kept.
        typed = web.post_form(
            "/subscribe",
            {"email": "ny@example.com", "timezone": "Mars/Base", "timezone_detected": "Asia/Tokyo"},
        )
        assert typed.status == 400 and "unknown time zone &#39;Mars/Base&#39;" in typed.text
        assert 'name="timezone_detected" value="Asia/Tokyo"' in typed.text
        assert web.store.subscribers.by_email("ny@example.com") is None


def test_the_workspace_import_names_the_line_of_an_unknown_zone(tmp_path, monkeypatch):
    """The workspace's upload holds the `timezone` column to the same rule, by file and line
    (a bad row refuses the whole upload there, as for any bad cell)."""
    from newsletter.editors import add_editor
    from tests.test_admin_http import PASSWORD
    from tests.test_imports import Client, _free_port, finished, serving

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    write_default_config(tmp_path)
    store = Store(load_settings(tmp_path / "newsletter.toml", env={}).database_url)
    add_editor(store, "ed@example.com", PASSWORD)
    port = _free_port()
    with serving(tmp_path, port):
        client = Client(port)
        client.sign_in()
        rows = b"email,name,timezone\nana@example.com,Ana,Europe/Lisbon\nbo@example.com,Bo,Mars/Olympus\n"
        status, headers, _ = client.upload("zones.csv", rows)
        assert status == 303
        job = client.wait(headers["location"], finished)
        assert job["state"] == "failed" and job["added"] == 0
        _, _, page = client.request("GET", headers["location"])
        assert "zones.csv:line 3: bo@example.com: unknown time zone &#39;Mars/Olympus&#39;" in page
    assert store.subscribers.count() == 0
    store.close()
