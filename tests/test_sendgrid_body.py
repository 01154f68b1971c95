"""The SendGrid request body by columns (`providers/_sendgrid_body.py`): whatever the readers'
names, addresses and links, the fast path gives exactly the text the general path gives
reader by reader, and the contract holds for it."""

from __future__ import annotations

import json
import random

import pytest

from newsletter.articles import read_article
from newsletter.providers import OutgoingBatch
from newsletter.providers._sendgrid_body import BodyEncoder, _columns, _Keys
from newsletter.records import Recipient
from newsletter.render import render_issue, substitution_values
from newsletter.settings import load_settings
from newsletter.testing.sendgrid_server import validate_mail_send

# Names and addresses each path treats differently: stray and double spaces, the characters
# SendGrid refuses in a display name, HTML and JSON specials, non-ASCII, control characters,
# a value long enough for the substitutions limit; IDNA, SMTPUTF8 and malformed addresses.
NAMES = [
    "Ann",
    "Zoë",
    "Doe, Jane",
    'Bob "B"',
    "",
    " lead",
    "trail ",
    "two  spaces",
    "tab\tx",
    "Ann & <Co>",
    "O'Neil",
    "back\\slash",
    "🐙 Oct",
    "\u2028x",
    "line\nbreak",
    "x" * 900,
    "semi;colon",
    "José Ñ",
    "\x00nul",
    "\\u0000",
]
ADDRESSES = [
    "a{}@example.com",
    "A{}@Example.com",
    "b{}@bücher.de",
    "ü{}@x.de",
    "noat{}",
    "sp ace{}@x.com",
    'q"{}@x.com',
]
LINK_ENDS = ['"q', "\\b", "é", "&a=<1>", "x" * 9990]


@pytest.fixture
def rendered(folder, seed_path):
    settings = load_settings(
        folder / "newsletter.toml",
        env={"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_HOST": "http://127.0.0.1:9"},
    )
    return settings, render_issue([read_article(seed_path)], settings)


def batch_of(rendered, recipients, urls, **options) -> OutgoingBatch:
    return OutgoingBatch(
        issue_id=3,
        batch=7,
        rendered=rendered,
        recipients=tuple(recipients),
        unsubscribe_urls=tuple(urls),
        **options,
    )


def test_columns_give_the_general_paths_text_for_any_reader(rendered):
    settings, issue = rendered
    encoder = BodyEncoder(settings, ("newsletter",))
    rng = random.Random(22)
    for _ in range(2000):
        recipients, urls = [], []
        for i in range(rng.randint(0, 12)):
            address = rng.choice(ADDRESSES if rng.random() < 0.3 else ADDRESSES[:1])
            number = rng.randint(0, 5) if rng.random() < 0.2 else i + 100  # some duplicates
            name = rng.choice(NAMES) if rng.random() < 0.5 else f"Reader {i}"
            recipients.append(Recipient(i + 1, address.format(number), name, f"t{i}"))
            url = f"https://n.example/unsubscribe/t{i}"
            urls.append(url + (rng.choice(LINK_ENDS) if rng.random() < 0.05 else ""))
        batch = batch_of(issue, recipients, urls, categories=("a", "b"))
        fast, general = encoder.build(batch), encoder.build(batch, by_columns=False)
        assert (fast.encoded, fast.skipped, fast.personalizations) == (
            general.encoded,
            general.skipped,
            general.personalizations,
        ), (recipients, urls)


def test_a_plain_batch_goes_by_columns_and_holds_each_value(rendered):
    """The common batch takes the columns (no reader of its own), and what it encodes
    decodes to each reader's own values under the contract."""
    settings, issue = rendered
    recipients = [
        Recipient(i, f"reader{i}@example.com", name, f"tok{i}")
        for i, name in enumerate(["Reader 1", "Zoë", "Ann & <Co>", "O'Neil", "back\\slash"], 1)
    ]
    urls = [f"https://n.example/unsubscribe/{r.token}" for r in recipients]
    batch = batch_of(issue, recipients, urls)
    keys = _Keys.of(issue.placeholders, batch)
    columns = _columns(batch, keys)
    assert columns is not None and columns.odd == ()
    with_odd = batch_of(
        issue,
        [*recipients, Recipient(9, "x@example.com", "Doe, J", "t")],
        [*urls, "https://n.example/u"],
    )
    assert _columns(with_odd, keys).odd == (5,)

    built = BodyEncoder(settings, ()).build(batch)
    assert built.encoded.isascii()
    body = json.loads(built.encoded)
    assert validate_mail_send(body) == []
    for p, r, url in zip(body["personalizations"], recipients, urls, strict=True):
        assert p["to"] == [{"email": r.email, "name": r.name}]
        assert p["substitutions"] == substitution_values(issue, r.name, url)
        assert p["custom_args"]["subscriber_id"] == str(r.subscriber_id)
        assert p["headers"]["List-Unsubscribe"] == f"<{url}>"
