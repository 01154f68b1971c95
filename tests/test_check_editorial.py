"""The editorial check rules: the article contract and the spoiler-leak check, as findings
of `newsletter check` and of the check before every send."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.articles import read_article
from newsletter.check import ERROR, WARNING
from newsletter.check.editorial import check_contract, check_spoiler_leaks
from newsletter.layouts import DIGEST, FULL
from tests.conftest import write

DATA = Path(__file__).resolve().parent / "data"


def leaks(name: str, **kwargs):
    article = read_article(DATA / name)
    options = {"subject": article.title, "preheader": None, "layout": FULL, **kwargs}
    return check_spoiler_leaks([article], **options)


def test_a_leaking_recap_is_a_warning_naming_the_sentence_and_the_ending_line():
    (finding,) = leaks("leaky_recap.txt")
    assert finding.severity == WARNING and finding.code == "spoiler-leak"
    assert finding.where == f"{DATA / 'leaky_recap.txt'}:9"
    assert "'By the end, Ines betrays her brother" in finding.message
    assert "echoes 'What Happens in the Ending' at line 12" in finding.message


def test_the_editor_can_make_it_an_error():
    (finding,) = leaks("leaky_recap.md", severity=ERROR, layout=DIGEST)
    assert finding.severity == ERROR
    assert finding.where == f"{DATA / 'leaky_recap.md'}:13"
    with pytest.raises(ValueError, match="spoiler_leak"):
        leaks("leaky_recap.md", severity="fatal")


def test_names_alone_are_no_leak():
    assert leaks("names_only.txt") == []


def test_a_leaking_subject_is_found_in_the_subject():
    (finding,) = leaks("names_only.txt", subject="Ines hands over the ledger, Tomas runs")
    assert "(in the subject)" in finding.message and finding.where == str(DATA / "names_only.txt")


def test_contract_findings_name_file_and_line(tmp_path):
    path = write(tmp_path / "a.txt", "T\nS.\nQuick Recap\nIt starts.\nThe Endng\nIt ends.\n")
    (finding,) = check_contract([read_article(path)])
    assert (finding.severity, finding.code) == (WARNING, "contract-unknown-heading")
    assert finding.where == f"{path}:5" and "The Endng" in finding.message
