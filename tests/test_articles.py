from pathlib import Path

import pytest

from newsletter.articles import read_article
from newsletter.exceptions import ArticleError
from newsletter.resources import sample_folder
from newsletter.settings import write_default_config
from tests.conftest import PLAIN_ARTICLES, run_cli, write


@pytest.mark.parametrize("known", PLAIN_ARTICLES, ids=lambda a: a.golden)
def test_reads_the_seed_format(known):
    article = read_article(known.path)
    assert article.title == known.title
    assert article.summary == known.summary
    assert article.year == known.year
    assert article.rating == pytest.approx(known.rating)
    assert article.author == known.author
    assert [s.heading for s in article.sections] == list(known.headings)
    assert article.recap.text.startswith(known.recap_start)
    assert [s.heading for s in article.spoiler_sections] == list(known.headings[1:])
    assert article.sections[1].line == known.second_heading_line


def test_bom_and_crlf_read_the_same(seed_path, tmp_path):
    text = seed_path.read_text(encoding="utf-8")
    variant = tmp_path / "crlf.txt"
    variant.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    a, b = read_article(seed_path), read_article(variant)
    assert (a.title, a.year, a.rating, a.author) == (b.title, b.year, b.rating, b.author)
    assert [s.text for s in a.sections] == [s.text for s in b.sections]


def test_markdown_with_front_matter(tmp_path):
    path = write(
        tmp_path / "piece.md",
        "---\ntitle: Night Train (2020)\nyear: 2020\nrating: 7.5/10\nauthor: Ana Ruiz\n"
        'teaser: A train, a secret.\nsubject: "This week: Night Train"\nnot_before: 2026-12-01 09:00\n'
        "---\n\n## Quick Recap\n\nA *conductor* finds a\nletter. <b>bold</b>\n\n## The Ending\n\nShe jumps.\n",
    )
    article = read_article(path)
    assert (article.title, article.year, article.rating, article.author) == (
        "Night Train (2020)",
        2020,
        7.5,
        "Ana Ruiz",
    )
    assert article.teaser_override == "A train, a secret."
    assert article.subject_override == "This week: Night Train"
    assert article.not_before.year == 2026
    assert [s.heading for s in article.sections] == ["Quick Recap", "The Ending"]
    assert article.recap.text == "A conductor finds a letter. <b>bold</b>"
    # Raw HTML in an article is text, never markup.
    assert "<b>" not in article.recap.html and "&lt;b&gt;" in article.recap.html
    assert "<em>conductor</em>" in article.recap.html


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        ("", 1, "empty"),
        ("Release Year: 2020\nRating: 5/10\n", 1, "no title"),
        ("A Title\nA summary.\nRelease Year: 2020\nRating: 5/10\n", 4, "no sections"),
        ("A Title\nsummary.\nRating: great\nQuick Recap\nText.\n", 3, "not a number out of 10"),
        ("A Title\nsummary.\nRating: 11/10\nQuick Recap\nText.\n", 3, "between 0 and 10"),
        ("A Title\nsummary.\nRelease Year: soon\nQuick Recap\nText.\n", 3, "year"),
    ],
)
def test_plain_text_errors_name_file_and_line(tmp_path, content, line, fragment):
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(ArticleError) as info:
        read_article(path)
    assert info.value.line == line
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}:")


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Title\nSummary.\nQuick Recap\nCaf\xe9 scene.\n".encode("latin-1"))
    with pytest.raises(ArticleError) as info:
        read_article(path)
    assert info.value.line == 4 and "UTF-8" in str(info.value)


def test_markdown_errors(tmp_path):
    no_title = write(tmp_path / "a.md", "---\nyear: 2020\n---\n## Quick Recap\nx\n")
    with pytest.raises(ArticleError, match="no title"):
        read_article(no_title)
    bad_yaml = write(tmp_path / "b.md", "---\ntitle: [unclosed\n---\n## Quick Recap\nx\n")
    with pytest.raises(ArticleError, match="YAML") as info:
        read_article(bad_yaml)
    assert info.value.line is not None
    bad_rating = write(tmp_path / "c.md", "---\ntitle: T\nrating: lots\n---\n## Quick Recap\nx\n")
    with pytest.raises(ArticleError, match="out of 10") as info:
        read_article(bad_rating)
    assert info.value.line == 3


def test_missing_file_is_an_article_error(tmp_path):
    with pytest.raises(ArticleError, match="cannot read"):
        read_article(Path(tmp_path / "nope.txt"))


@pytest.mark.parametrize("written", ["N/A", "n/a", "-", "unrated", ""])
def test_a_rating_of_n_a_shows_the_piece_without_a_rating(tmp_path, written):
    """`Rating: N/A` (or no rating at all) is a piece not rated yet, not a broken file."""
    sample = (sample_folder() / "001_the-lighthouse-keepers-daughter.txt").read_text("utf-8")
    assert "\nRating: " in sample
    (tmp_path / "na.txt").write_text(
        "\n".join(
            f"Rating: {written}" if line.startswith("Rating:") else line
            for line in sample.split("\n")
        ),
        encoding="utf-8",
    )
    (tmp_path / "none.txt").write_text(
        "\n".join(line for line in sample.split("\n") if not line.startswith("Rating:")),
        encoding="utf-8",
    )
    assert read_article(tmp_path / "na.txt").rating is None
    assert read_article(tmp_path / "none.txt").rating is None
    write_default_config(tmp_path)
    for name in ("na.txt", "none.txt"):
        checked = run_cli(["check", name], tmp_path)
        assert checked.returncode == 0, checked.stderr
        assert "Error" not in checked.stderr
    preview = run_cli(["preview", "na.txt", "--out", "out"], tmp_path)
    assert preview.returncode == 0, preview.stderr
    email_text = (tmp_path / "out" / "email.txt").read_text("utf-8")
    assert "N/A" not in email_text and "/10" not in email_text


def _docx(path):
    """A real (minimal) Word document: a zip with the parts Word writes."""
    import zipfile

    with zipfile.ZipFile(path, "w") as doc:
        doc.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        doc.writestr("word/document.xml", "<w:document><w:body>Quick Recap</w:body></w:document>")


@pytest.mark.parametrize(
    "name, expect",
    [
        ("piece.docx", ".docx articles are not supported"),
        ("piece.html", ".html articles are not supported"),
        ("piece.txt", "this file is a zip archive"),  # a Word file saved under .txt
    ],
)
def test_other_formats_are_named_with_the_ones_we_read(tmp_path, name, expect):
    path = tmp_path / name
    if name.endswith(".html"):
        path.write_text("<!DOCTYPE html><html><body><h2>Quick Recap</h2></body></html>")
    else:
        _docx(path)
    assert run_cli(["init", str(tmp_path / "folder")], tmp_path).returncode == 0
    done = run_cli(["queue", "add", str(path)], tmp_path / "folder")
    assert done.returncode == 1
    assert (
        expect in done.stderr
        and "plain text (.txt" in done.stderr
        and "Markdown (.md)" in done.stderr
    )
    assert "UTF-8" not in done.stderr and "Traceback" not in done.stderr
