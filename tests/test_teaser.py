import pytest

from newsletter.articles import read_article
from newsletter.exceptions import ArticleError
from newsletter.teaser import ELLIPSIS, MAX_TEASER_CHARS, recap_teaser, shorten, split_sentences
from tests.conftest import write


def test_seed_teaser_is_whole_recap_sentences(seed_path):
    article = read_article(seed_path)
    teaser = recap_teaser(article)
    assert len(teaser) <= MAX_TEASER_CHARS
    assert teaser.endswith(ELLIPSIS)
    body = teaser.removesuffix(ELLIPSIS).strip()
    recap_sentences = split_sentences(" ".join(article.recap.text.split()))
    prefixes = [" ".join(recap_sentences[:k]) for k in range(1, len(recap_sentences) + 1)]
    assert body in prefixes  # whole sentences from the start of the recap, nothing else


def test_teaser_never_contains_spoiler_text(seed_path):
    article = read_article(seed_path)
    teaser = recap_teaser(article).removesuffix(ELLIPSIS).strip()
    words = teaser.split()
    spoilers = " ".join(" ".join(s.text.split()) for s in article.spoiler_sections)
    # No run of eight consecutive teaser words appears in any section after the recap.
    for i in range(len(words) - 7):
        assert " ".join(words[i : i + 8]) not in spoilers


def test_long_sentence_is_cut_at_a_word_with_ellipsis():
    text = "word " * 200
    result = shorten(text.strip() + ".")
    assert len(result) <= MAX_TEASER_CHARS
    assert result.endswith(ELLIPSIS)
    assert result.removesuffix(ELLIPSIS).split()[-1] == "word"


def test_short_text_is_kept_whole():
    assert shorten("One. Two.") == "One. Two."


def test_abbreviations_do_not_end_sentences():
    assert split_sentences("Dr. Strange waits. Then he leaves.") == [
        "Dr. Strange waits.",
        "Then he leaves.",
    ]


def test_editor_teaser_overrides(tmp_path):
    path = write(
        tmp_path / "a.md", "---\ntitle: T\nteaser: Mine.\n---\n## Quick Recap\nRecap text.\n"
    )
    assert recap_teaser(read_article(path)) == "Mine."


def test_no_recap_falls_back_to_summary_never_to_spoilers(tmp_path):
    path = write(
        tmp_path / "a.txt", "Title\nThe one-line summary.\nWhat Happens in the Ending\nHe dies.\n"
    )
    teaser = recap_teaser(read_article(path))
    assert teaser == "The one-line summary."
    assert "dies" not in teaser


def test_no_recap_no_summary_is_refused(tmp_path):
    path = write(tmp_path / "a.md", "---\ntitle: T\n---\n## The Ending\nHe dies.\n")
    with pytest.raises(ArticleError, match="refusing"):
        recap_teaser(read_article(path))
