"""The message laid out once (`providers/_mime.py`): its fast path, one run of segments
between the slots, gives byte for byte what filling each part in turn gives, for any reader;
values that would make a line too long or hold the boundary take the parts' own path."""

from __future__ import annotations

import copy

import pytest

from newsletter.articles import read_article
from newsletter.providers._mime import MAX_LINE, issue_template
from newsletter.records import Recipient
from newsletter.render import render_issue, substitution_values
from tests.test_outbox import NAMES


@pytest.fixture
def rendered(settings, seed_path):
    return render_issue([read_article(seed_path)], settings)


def test_the_fast_path_writes_what_the_parts_write(settings, rendered):
    fast = issue_template(settings, rendered, 5)
    parts_only = copy.copy(fast)
    parts_only.fast_limit = -1  # every message through `_Part.render`
    assert 0 < fast.fast_limit < MAX_LINE
    names = {**NAMES, 10: ("ann@example.com", "Ann Archer"), 11: ("x@example.com", "€uro")}
    boundary = fast.boundary.decode()
    names[12] = ("clash@example.com", f"a {boundary} b")  # only base64 is safe then
    names[13] = ("plain@example.com", "Plain Reader")
    for sid, (address, name) in names.items():
        recipient = Recipient(sid, address, name, f"token-{sid}")
        url = f"https://n.example/unsubscribe/token-{sid}"
        ids = fast.message_ids(1)
        one = fast.for_recipient(rendered, recipient, url, ids[0])
        other = parts_only.for_recipient(rendered, recipient, url, ids[0])
        assert b"".join(one) == b"".join(other), name
        slots = len(fast.flat[True][1])
        took_fast = len(one) == 6 + 2 * slots + 1
        values = [v.encode() for v in substitution_values(rendered, name, url).values()]
        fits = max(map(len, values)) <= fast.fast_limit
        assert took_fast == (fits and boundary not in name), name
    assert took_fast  # the last reader, a plain one, took it
