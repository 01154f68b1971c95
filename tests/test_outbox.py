"""The outbox provider's .eml files, parsed back with Python's own email parser and compared
with the issue personalised by `render.personalize`, and the outbox through the real CLI."""

from __future__ import annotations

import re
import stat
from email.header import decode_header
from email.parser import BytesParser
from email.policy import default
from email.utils import parsedate_to_datetime

import pytest

from newsletter.articles import read_article
from newsletter.exceptions import Rejected, TransientError
from newsletter.providers import Message, OutgoingBatch
from newsletter.providers.outbox import OutboxProvider, issue_template, to_header
from newsletter.records import Recipient
from newsletter.render import personalize, render_issue, substitution_values
from tests.conftest import run_cli, write

PARSER = BytesParser(policy=default)
re_message_id = re.compile(r"<[0-9a-f]{32}@[A-Za-z0-9.-]+>")

NAMES = {
    1: ("ann@example.com", "Ann Archer"),
    2: ("zoe@example.com", "Zoë Ünal-Çelik"),
    3: ("bob@example.org", 'Bob "the Builder", Jr.'),
    4: ("long@example.com", "Wolfgang " * 100),  # 900 characters: a folded header
    5: ("omega@example.com", "Ωμέγα " * 30),  # several encoded words
    6: ("evil@example.com", "=?utf-8?q?evil?="),  # looks like an encoded word; is not one
    7: ("back@example.com", "a\\b (c) <d>"),
    8: ("noname@example.com", ""),
    9: ("δοκιμή@example.com", "Γιώργος"),  # RFC 6532: the address goes out in UTF-8
}


def wire_text(value: str) -> str:
    """What a text part holds after `email` wrote it: CRLF line ends and a final one."""
    return "\r\n".join(line.decode() for line in value.encode().splitlines()) + "\r\n"


def raw_header(data: bytes, name: str) -> str:
    """A header's raw value, unfolded, as written in the file."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    unfolded = head.replace("\r\n ", " ").split("\r\n")
    return next(line for line in unfolded if line.startswith(f"{name}: ")).partition(": ")[2]


@pytest.fixture
def rendered(settings, seed_path):
    return render_issue([read_article(seed_path)], settings)


def send(settings, rendered, tmp_path, names=NAMES):
    recipients = tuple(
        Recipient(sid, address, name, f"token-{sid}") for sid, (address, name) in names.items()
    )
    batch = OutgoingBatch.of(settings, 5, 1, rendered, recipients)
    provider = OutboxProvider(settings, tmp_path / "box")
    return batch, provider.send(batch)


def test_every_header_and_both_parts_read_back_as_the_personalised_issue(
    settings, rendered, tmp_path
):
    batch, accepted = send(settings, rendered, tmp_path)
    assert accepted.rejected == {}
    assert set(accepted.message_ids) == set(NAMES)
    for index, recipient in enumerate(batch.recipients):
        path = tmp_path / "box" / "issue-5" / f"{recipient.subscriber_id:08d}.eml"
        data = path.read_bytes()
        msg = PARSER.parsebytes(data)
        assert msg.defects == []
        unsubscribe = batch.unsubscribe_urls[index]
        expected = personalize(rendered, recipient.name, unsubscribe)
        shown = " ".join(recipient.name.split())

        assert msg["From"].addresses[0].addr_spec == settings.from_email
        assert msg["From"].addresses[0].display_name == settings.from_name
        to = msg["To"].addresses
        assert len(to) == 1
        if recipient.email.isascii():
            assert to[0].addr_spec == recipient.email
            if len(shown.encode()) <= 45 or shown.isascii():
                assert to[0].display_name == shown
            # RFC 2047 readers join adjacent encoded words exactly (Python's address parser
            # keeps a space between them, as with the `email` package's own output).
            decoded = "".join(
                part.decode(charset or "ascii") if isinstance(part, bytes) else part
                for part, charset in decode_header(raw_header(data, "To").rpartition(" <")[0])
            )
            assert decoded.strip('"').replace("\\", "") == shown.replace("\\", "")
        else:
            assert str(msg["To"]) == f"{shown} <{recipient.email}>"
            username = to[0].username.encode("ascii", "surrogateescape").decode("utf-8")
            assert f"{username}@{to[0].domain}" == recipient.email
            assert to[0].display_name == shown
        assert msg["Subject"] == rendered.subject
        assert msg["Message-ID"] == accepted.message_ids[recipient.subscriber_id]
        assert parsedate_to_datetime(msg["Date"]).tzinfo is not None
        assert msg["List-Unsubscribe"] == f"<{unsubscribe}>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["X-Newsletter-Issue"] == "5"
        assert msg["MIME-Version"] == "1.0"
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
        assert [p.defects for p in parts] == [[], []]
        assert parts[0].get_content() == wire_text(expected.text)
        assert parts[1].get_content() == wire_text(expected.html)
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    folder = tmp_path / "box" / "issue-5"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == [f"{sid:08d}.eml" for sid in NAMES]


def test_a_line_made_too_long_by_a_name_goes_out_base64(settings, rendered, tmp_path):
    long_name = "Maximilian" * 99  # the greeting line passes 998 bytes with it
    batch, accepted = send(settings, rendered, tmp_path, {1: ("max@example.com", long_name)})
    data = (tmp_path / "box" / "issue-5" / "00000001.eml").read_bytes()
    msg = PARSER.parsebytes(data)
    expected = personalize(rendered, long_name, batch.unsubscribe_urls[0])
    parts = list(msg.iter_parts())
    assert "base64" in [p["Content-Transfer-Encoding"] for p in parts]
    assert parts[0].get_content() == wire_text(expected.text)
    assert parts[1].get_content() == wire_text(expected.html)
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_an_address_that_cannot_be_written_is_rejected_alone(settings, rendered, tmp_path):
    names = {1: ("ann@example.com", "Ann"), 2: ("not an address", "X"), 3: ("c@example.com", "")}
    _, accepted = send(settings, rendered, tmp_path, names)
    assert set(accepted.message_ids) == {1, 3}
    assert set(accepted.rejected) == {2} and "not an address" in accepted.rejected[2]
    assert sorted(p.name for p in (tmp_path / "box" / "issue-5").iterdir()) == [
        "00000001.eml",
        "00000003.eml",
    ]


def test_a_transactional_message_to_a_non_ascii_address(settings, tmp_path):
    provider = OutboxProvider(settings, tmp_path / "box")
    message = Message("δοκιμή@example.com", "Γ", "Confirm", "Hi\n", "<p>Hi</p>", "confirm", "1")
    message_id = provider.send_message(message)
    path = tmp_path / "box" / "confirm" / "1.eml"
    msg = PARSER.parsebytes(path.read_bytes())
    assert str(msg["To"]) == "Γ <δοκιμή@example.com>" and msg["Message-ID"] == message_id
    assert msg.get_body(("plain",)).get_content() == "Hi\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(Rejected):
        provider.send_message(
            Message("no address", "X", "Confirm", "Hi\n", "<p>Hi</p>", "confirm", "2")
        )


def test_a_failed_transactional_write_leaves_no_temporary_file(settings, tmp_path):
    """The move into place fails (a folder holds the file's name): the error is transient
    and the written temporary file is gone, as for a batch."""
    provider = OutboxProvider(settings, tmp_path / "box")
    (tmp_path / "box" / "confirm" / "1.eml").mkdir(parents=True)
    message = Message("ann@example.com", "Ann", "Confirm", "Hi\n", "<p>Hi</p>", "confirm", "1")
    with pytest.raises(TransientError, match="cannot write to the outbox"):
        provider.send_message(message)
    assert [p.name for p in (tmp_path / "box" / "confirm").iterdir()] == ["1.eml"]


def test_every_message_of_a_batch_has_its_own_id(settings, rendered, tmp_path):
    names = {sid: (f"reader{sid}@example.com", "") for sid in range(1, 201)}
    _, accepted = send(settings, rendered, tmp_path, names)
    ids = list(accepted.message_ids.values())
    assert len(set(ids)) == len(ids) == 200
    for sid, message_id in accepted.message_ids.items():
        data = (tmp_path / "box" / "issue-5" / f"{sid:08d}.eml").read_bytes()
        assert PARSER.parsebytes(data)["Message-ID"] == message_id
        assert re_message_id.fullmatch(message_id)


def test_a_non_ascii_local_part_does_not_stall_the_issue(tmp_path, seed_path):
    """Issue 10 point 1, through the real command."""
    assert run_cli(["init", "."], tmp_path).returncode == 0
    write(
        tmp_path / "subs.csv",
        "email,name\r\nann@example.com,Ann\r\nδοκιμή@example.com,G\r\ncarla@example.net,Carla\r\n",
    )
    out = run_cli(["subscribers", "import", "subs.csv"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert run_cli(["queue", "add", str(seed_path)], tmp_path).returncode == 0
    out = run_cli(["run", "--once"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    files = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert len(files) == 3
    recipients = {}
    for path in files:
        msg = PARSER.parsebytes(path.read_bytes())
        assert msg.get_body(("plain",)).get_content().startswith("ENDINGS EXPLAINED")
        recipients[str(msg["To"])] = msg
    assert set(recipients) == {
        "Ann <ann@example.com>",
        "G <δοκιμή@example.com>",
        "Carla <carla@example.net>",
    }
    status = run_cli(["status", "1"], tmp_path)
    assert status.returncode == 0 and "sent 3" in status.stdout
    again = run_cli(["run", "--once"], tmp_path)
    assert again.returncode == 0 and "Traceback" not in again.stderr


def test_a_name_holding_the_boundary_cannot_end_a_part(settings, rendered):
    template = issue_template(settings, rendered, 5)
    name = "--" + template.boundary.decode() + "--"
    url = "http://127.0.0.1:8000/unsubscribe/t"
    values = {
        key: value.encode() for key, value in substitution_values(rendered, name, url).items()
    }
    data = b"".join(template.fill(to_header("a@example.com", name), "<m@x>", values, url))
    msg = PARSER.parsebytes(data)
    parts = list(msg.iter_parts())
    assert [p["Content-Transfer-Encoding"] for p in parts] == ["base64", "base64"]
    expected = personalize(rendered, name, url)
    assert parts[0].get_content() == wire_text(expected.text)
    assert parts[1].get_content() == wire_text(expected.html)
    assert msg["To"].addresses[0].display_name == name
