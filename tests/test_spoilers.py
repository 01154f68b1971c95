"""The spoiler-leak detector on articles written for it (tests/data/)."""

from __future__ import annotations

from pathlib import Path

from newsletter.articles import read_article
from newsletter.contract import DEFAULT_CONTRACT
from newsletter.resources import sample_articles
from newsletter.spoilers import (
    InboxText,
    content_words,
    find_leaks,
    inbox_of,
    normalize,
    shingles,
)
from newsletter.teaser import recap_teaser
from tests.conftest import write

DATA = Path(__file__).resolve().parent / "data"


def leaks_of(path: Path, *extra: InboxText):
    article = read_article(path)
    safe = DEFAULT_CONTRACT.safe_sections(article.sections)
    inbox = inbox_of(article, safe, subject=article.title, teaser=recap_teaser(article))
    return find_leaks(
        article, [*inbox, *extra], DEFAULT_CONTRACT.spoiler_sections(article.sections)
    )


def test_a_recap_that_gives_the_ending_away_is_flagged():
    (leak,) = leaks_of(DATA / "leaky_recap.txt")
    assert leak.sentence.startswith("By the end, Ines betrays her brother")
    assert leak.where == ("Quick Recap",)
    assert leak.section == "What Happens in the Ending"
    # The echoed sentence is in the second paragraph of the ending, on line 12 of the file.
    assert leak.line == 12
    assert "drowns in the flooded quarry" in leak.echoed
    assert leak.phrase == "Tomas drowns in the flooded quarry"
    # The recap sentence itself is in the recap's second paragraph, line 9.
    assert leak.location == f"{DATA / 'leaky_recap.txt'}:9"
    assert (
        "'Tomas drowns in the flooded quarry' echoes 'What Happens in the Ending' at line 12"
        in (leak.message)
    )


def test_a_recap_sharing_only_character_names_is_not_flagged():
    path = DATA / "names_only.txt"
    article = read_article(path)
    # The recap and the ending do share a run of three content words, the three names...
    recap_grams = {g for s in article.sections[:1] for g in shingles(content_words(s.text))}
    ending_grams = {g for s in article.sections[1:] for g in shingles(content_words(s.text))}
    assert ("toma", "ine", "calder") in recap_grams & ending_grams
    # ...but names used all over the recap are not distinctive.
    assert leaks_of(path) == []


def test_the_markdown_format_is_checked_with_its_own_lines():
    (leak,) = leaks_of(DATA / "leaky_recap.md")
    assert leak.sentence == (
        "In the end Lucas confesses that he sprayed the pesticide himself to force the sale."
    )
    assert leak.section == "What Happens in the Ending"
    assert leak.line == 17
    assert leak.sentence_line == 13
    assert "sprayed the pesticide himself" in leak.phrase


def test_a_subject_of_the_editors_own_is_checked_too():
    (leak,) = leaks_of(
        DATA / "names_only.txt",
        InboxText("subject", "Why Ines hands over the ledger proving Calder's operation"),
    )
    assert leak.where == ("subject",)
    assert leak.section == "What Happens in the Ending"
    assert leak.line == 12


def test_the_same_sentence_in_several_places_is_one_finding():
    article = read_article(DATA / "leaky_recap.txt")
    sentence = "Tomas drowns in the flooded quarry while the officers watch."
    leaks = find_leaks(
        article,
        [InboxText("preheader", sentence), InboxText("card 1", sentence)],
        DEFAULT_CONTRACT.spoiler_sections(article.sections),
    )
    assert [leak.where for leak in leaks] == [("preheader", "card 1")]


def test_a_phrase_the_recap_uses_elsewhere_is_not_distinctive(tmp_path):
    # "the old salt works" is set up in the recap's first paragraph, so a later recap
    # sentence that names it again gives nothing away.
    path = write(
        tmp_path / "a.txt",
        "T\nS.\nQuick Recap\nThe smugglers meet at the old salt works every Sunday night.\n"
        "Ines counts crates at the old salt works while Tomas sleeps.\n"
        "What Happens in the Ending\nPolice surround the old salt works at dawn.\n",
    )
    article = read_article(path)
    leaks = find_leaks(
        article,
        [InboxText("recap", article.sections[0].text)],
        DEFAULT_CONTRACT.spoiler_sections(article.sections),
    )
    assert leaks == []


def test_inflections_and_possessives_meet():
    assert {normalize(w) for w in ("beats", "beating", "beat")} == {"beat"}
    assert normalize("Calder\u2019s") == normalize("Calder's") == "calder"
    assert [w.norm for w in content_words("The film's ending: Café burns.")] == ["cafe", "burn"]


def test_the_seed_and_sample_articles_have_no_leaks(seed_path):
    for path in (seed_path, *sample_articles()):
        assert leaks_of(path) == [], path
