"""`newsletter.check`: the pre-send lint, and the promise that an issue is never clipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import pytest

from newsletter.articles import read_article
from newsletter.check import (
    ERROR,
    WARNING,
    Finding,
    check_email,
    check_rendered,
    check_source,
    format_findings,
    has_errors,
)
from newsletter.layouts import DIGEST, FULL
from newsletter.render import (
    GMAIL_CLIP_BYTES,
    html_size,
    personalize,
    render_fitting,
    render_issue,
)
from newsletter.resources import sample_articles
from newsletter.settings import EXAMPLE_POSTAL_ADDRESS, settings_from_dict, write_default_config
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path):
    return settings_from_dict(
        {
            "newsletter": {
                "name": "Endings Explained",
                "base_url": "https://endings.example.com",
                "postal_address": "Endings Explained, 1 Example Street, 75001 Paris, France",
            }
        },
        tmp_path,
    )


def email(body: str, head: str = "") -> str:
    """A small but complete email around `body`, with a preheader and an unsubscribe link."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"{head}</head>\n<body>\n<div>A fine preheader for the test</div>\n{body}\n"
        "<p><a href='https://example.com/unsubscribe/t'>Unsubscribe</a></p>\n</body></html>\n"
    )


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def lint(html: str, **kw) -> list[Finding]:
    args = {
        "text": "Hello\nUnsubscribe: https://example.com/unsubscribe/t\n",
        "subject": "A subject",
        "preheader": "A fine preheader for the test",
    }
    args.update(kw)
    return check_email(html, args["text"], args["subject"], args["preheader"])


# -- long issues: collapsed, never clipped ---------------------------------------------------
def write_long_article(folder: Path, n: int, paragraphs: int) -> Path:
    """A plain-text article of about `paragraphs` x 600 characters with unique markers."""
    sentence = f"Film {n} keeps its secrets until the last reel, and the ending repays patience. "
    body = [
        f"Long Film {n} (20{n:02d}): Ending Explained",
        f"A long summary of film {n}.",
        f"Release Year: 20{n:02d}",
        "Rating: 7.5/10",
        "Author: Test Writer",
        "",
        "Quick Recap",
        f"Recap of film {n}: a quiet town, a stranger, a storm that does not come. " * 3,
    ]
    for s in range(1, 4):
        body += ["", f"Section {s} Of Film {n}"]
        body += [f"MARK-{n}-{s}-{p} " + sentence * 7 for p in range(paragraphs // 3)]
    path = folder / f"{n:03d}_long.txt"
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    return path


def test_long_issue_stays_under_gmail_limit_and_keeps_lead_and_footer(tmp_path, settings):
    articles = [read_article(write_long_article(tmp_path, n, 60)) for n in range(1, 5)]
    # Several articles make a digest by default; the full layout is the one that can clip.
    in_full = render_issue(articles, settings, layout=FULL)
    assert html_size(in_full) > GMAIL_CLIP_BYTES  # the test only means something if so

    rendered = render_fitting(articles, settings, layout=FULL)
    assert html_size(rendered) <= GMAIL_CLIP_BYTES
    html = rendered.html
    # The lead article is there in full, to its last paragraph.
    assert "MARK-1-3-19 " in html and "Section 3 Of Film 1" in html
    # At least the last one is collapsed to title, teaser and a link to the web edition.
    collapsed = [n for n in range(2, 5) if f"MARK-{n}-1-0 " not in html]
    assert 4 in collapsed
    for n in collapsed:
        assert f"Long Film {n} (20{n:02d}): Ending Explained" in html
        assert f"Recap of film {n}: a quiet town" in html  # the teaser
        assert f'href="{rendered.view_url}#article-{n}"' in html
        assert f"{rendered.view_url}#article-{n}" in rendered.text
        assert f"MARK-{n}-2-0 " not in rendered.text
    # The footer survived, unsubscribe link included, and the check agrees.
    assert f'href="{rendered.placeholders.unsubscribe_url}"' in html
    assert html.rstrip().endswith("</html>")
    findings = check_rendered(rendered)
    assert not has_errors(findings), format_findings(findings)
    (note,) = [f for f in findings if f.code == "collapsed"]
    assert note.severity == WARNING and f"{len(collapsed)} article(s)" in note.message
    # The web edition keeps every article in full.
    assert all(f"MARK-{n}-3-0 " in rendered.archive_html for n in range(1, 5))


def test_one_article_too_long_for_gmail_is_an_error_naming_the_size(tmp_path, settings):
    rendered = render_fitting([read_article(write_long_article(tmp_path, 1, 240))], settings)
    findings = check_rendered(rendered)
    clip = [f for f in findings if f.code == "gmail-clip"]
    assert clip and clip[0].severity == ERROR
    size = len(personalize(rendered, "Sam", "https://x.example/u").html.encode())
    assert f"{size / 1024:.0f}" in clip[0].message and "KB" in clip[0].message
    assert has_errors(findings)


# -- our own templates pass ------------------------------------------------------------------
@pytest.mark.parametrize(("layout", "collapse_after"), [(FULL, None), (FULL, 1), (DIGEST, None)])
def test_built_in_templates_pass_with_no_errors_or_warnings(settings, layout, collapse_after):
    # The Markdown sample leads; the subject of the three titles still fits on a phone.
    articles = [read_article(p) for p in sorted(sample_articles(), key=lambda p: p.suffix != ".md")]
    rendered = render_issue(articles, settings, collapse_after=collapse_after, layout=layout)
    assert len(rendered.subject) <= 60
    findings = check_rendered(rendered)
    expected = [] if collapse_after is None else ["collapsed"]
    assert [f.code for f in findings] == expected, format_findings(findings)


# -- the plain checks ------------------------------------------------------------------------
def test_clean_email_has_no_findings_but_client_support():
    findings = lint(email("<p>Hello</p>"))
    assert not has_errors(findings), format_findings(findings)


def test_missing_parts_are_reported():
    html = email("<p>Hello</p>").replace("Unsubscribe</a>", "Manage</a>").replace("unsub", "x")
    found = lint(html, text=None, preheader="")
    by_code = {f.code: f for f in found}
    assert by_code["no-text"].severity == ERROR
    assert by_code["no-unsubscribe"].severity == ERROR
    assert by_code["no-preheader"].severity == WARNING
    assert "preheader-not-in-html" in codes(lint(email("<p>x</p>"), preheader="Somewhere else"))


def test_images_need_alt_text_and_full_addresses():
    html = email(
        "<img src='https://example.com/a.png' alt='A poster'>\n"
        "<img src='https://example.com/b.png'>\n<img src='c.png' alt=''>"
    )
    found = {f.code: f for f in lint(html)}
    assert found["img-alt"].severity == ERROR and "b.png" in found["img-alt"].message
    assert found["img-alt"].where == "html:6"
    assert "c.png" in found["img-src"].message


@pytest.mark.parametrize(
    "href, code",
    [
        ("", "link-empty"),
        ("#", "link-anchor"),
        ("film.html", "link-relative"),
        ("/archive/x", "link-relative"),
        ("https://example.com/a b", "link-space"),
        ("javascript:alert(1)", "link-scheme"),
        ("https://", "link-no-host"),
    ],
)
def test_broken_looking_links_are_errors(href, code):
    found = [f for f in lint(email(f"<p><a href='{href}'>x</a></p>")) if f.code == code]
    assert found and found[0].severity == ERROR and found[0].where == "html:5"


def test_good_links_pass_and_local_ones_warn():
    ok = "<a href='https://example.com/'>a</a><a href='mailto:ed@example.com'>b</a>"
    assert not {c for c in codes(lint(email(ok))) if c.startswith("link")}
    local = [f for f in lint(email("<a href='http://127.0.0.1:8000/archive/x'>a</a>"))]
    assert [f.severity for f in local if f.code == "link-local"] == [WARNING]


def test_long_subject_is_a_warning_and_empty_subject_an_error():
    long = lint(
        email("<p>x</p>"), subject="An ending explained for a film whose title is long " * 2
    )
    assert [f.severity for f in long if f.code == "subject-long"] == [WARNING]
    assert ERROR in [
        f.severity for f in lint(email("<p>x</p>"), subject=" ") if f.code == "no-subject"
    ]


@pytest.mark.parametrize(
    "leftover",
    ["TK", "{{ name }}", "{% if x %}", "Lorem ipsum dolor", "nl_0123abcd4567ef89_name_html"],
)
def test_leftover_placeholders_are_errors(leftover):
    found = [
        f
        for f in lint(email(f"<p>Intro</p>\n<p>Then {leftover} here</p>"))
        if f.code == "placeholder"
    ]
    assert found and found[0].severity == ERROR and found[0].where == "html:6"
    in_text = lint(
        email("<p>x</p>"), text=f"a\nb {leftover}\nUnsubscribe: https://example.com/unsubscribe/t"
    )
    assert "text:2" in [f.where for f in in_text if f.code == "placeholder"]
    assert "placeholder" in codes(lint(email("<p>x</p>"), subject=f"Subject {leftover}"))


def test_words_containing_tk_are_not_placeholders():
    assert "placeholder" not in codes(lint(email("<p>Atkins and TKO at the Tkachenko gala</p>")))


def test_format_and_has_errors():
    findings = [
        Finding(WARNING, "subject-long", "long", "subject"),
        Finding(ERROR, "no-text", "no text", "text"),
        Finding(WARNING, "x", "whole email"),
    ]
    assert format_findings(findings).splitlines() == [
        "error text: no text",
        "warning subject: long",
        "warning: whole email",
        "1 error, 2 warnings",
    ]
    assert has_errors(findings) and not has_errors(findings[:1]) and not has_errors([])


# -- client support (caniemail) --------------------------------------------------------------
def test_unsupported_css_is_one_warning_per_feature_naming_clients_and_count():
    body = "\n".join(f"<div style='display:flex; color:#000'>{n}</div>" for n in range(3))
    found = [f for f in lint(email(body)) if f.code == "css-display-flex"]
    assert len(found) == 1
    warning = found[0]
    assert warning.severity == WARNING and warning.where == "html:5"
    assert "Outlook (Windows" in warning.message and "used 3 times" in warning.message
    assert "css-display-flex" in format_findings(found)


def test_features_inside_media_queries_only_count_for_clients_that_apply_them():
    style = (
        "<style>@media screen and (max-width: 600px) { .x { display: grid !important; } }\n"
        "@media (prefers-color-scheme: dark) { .y { border-radius: 3px !important; } }</style>"
    )
    in_media = {
        f.code: f
        for f in check_email(
            email("<p>x</p>", style),
            "t https://example.com/unsubscribe/t",
            "s",
            "A fine preheader for the test",
            accept=(),
        )
    }
    # Gmail applies the first block and drops grid; Outlook for Windows ignores the whole block.
    assert "Gmail" in in_media["css-display-grid"].message
    assert "Windows" not in in_media["css-display-grid"].message
    # Only clients that know prefers-color-scheme read the second: all do border-radius.
    assert "css-border-radius" not in in_media
    # The same grid inline reaches Outlook for Windows too.
    inline = {f.code: f for f in lint(email("<div style='display:grid'>x</div>"))}
    assert "Outlook (Windows" in inline["css-display-grid"].message


def test_unsupported_html_is_reported_and_accepted_fallbacks_are_not():
    found = codes(lint(email("<p><a href='https://example.com' target='_blank'>x</a></p>")))
    assert "html-target" in found
    radius = "<table><tr><td style='border-radius:4px'>x</td></tr></table>"
    assert "css-border-radius" not in codes(lint(email(radius)))
    shown = check_email(
        email(radius),
        "t https://example.com/unsubscribe/t",
        "s",
        "A fine preheader for the test",
        accept=(),
    )
    assert "css-border-radius" in codes(shown)


def test_missing_caniemail_data_is_one_clear_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("NEWSLETTER_CANIEMAIL_JSON", str(tmp_path / "absent.json"))
    found = [
        f for f in lint(email("<div style='display:flex'>x</div>")) if f.code == "caniemail-missing"
    ]
    assert len(found) == 1
    assert found[0].severity == WARNING and "absent.json" in found[0].message


def test_unreadable_caniemail_data_is_a_warning_not_a_crash(monkeypatch, tmp_path):
    broken = tmp_path / "caniemail.json"
    broken.write_text("{not json", encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_CANIEMAIL_JSON", str(broken))
    found = [f for f in lint(email("<p>x</p>")) if f.code == "caniemail-missing"]
    assert len(found) == 1 and "cannot read" in found[0].message


def test_accessibility_basics():
    found = codes(lint(email("<table><tr><td>x</td></tr></table>").replace(" lang='en'", "")))
    assert {"no-lang", "table-role"} <= found
    ok = email("<table role='presentation'><tr><td>x</td></tr></table>")
    assert not {"no-lang", "table-role"} & codes(lint(ok))


def test_placeholder_finding_quotes_its_context():
    (found,) = [
        f for f in lint(email("<p>The twist comes in TK minutes.</p>")) if f.code == "placeholder"
    ]
    assert "comes in TK minutes" in found.message


def test_check_source_renders_like_preview_and_wants_a_postal_address(tmp_path, settings):
    source = (str(sample_articles()[0]),)
    assert not has_errors(check_source(settings, None, source))
    assert "no-postal-address" not in codes(check_source(settings, None, source))
    bare = settings_from_dict(
        {"newsletter": {"base_url": "https://endings.example.com", "postal_address": ""}}, tmp_path
    )
    assert "no-postal-address" in codes(check_source(bare, None, source))
    # The default is the sample's made-up address: fine for a demo, never for a real send.
    example = settings_from_dict({"newsletter": {"base_url": "https://e.example.com"}}, tmp_path)
    assert example.postal_address == EXAMPLE_POSTAL_ADDRESS
    assert "example-postal-address" in codes(check_source(example, None, source))
    own = settings_from_dict(
        {"newsletter": {"base_url": "https://e.example.com", "postal_address": "2 Real Rd"}},
        tmp_path,
    )
    assert not {"example-postal-address", "no-postal-address"} & codes(
        check_source(own, None, source)
    )


def test_installed_copy_checks_client_support_without_node_modules(tmp_path):
    """What `pip install` gives: the package alone, somewhere without node_modules, run
    from a newsletter folder (whose own templates use flexbox, which Outlook drops)."""
    site = tmp_path / "site"
    shutil.copytree(
        REPO / "newsletter", site / "newsletter", ignore=shutil.ignore_patterns("__pycache__")
    )
    folder = tmp_path / "letter"
    folder.mkdir()
    write_default_config(folder)
    shutil.copytree(REPO / "templates", folder / "templates")
    template = folder / "templates" / "issue.html.j2"
    html = template.read_text(encoding="utf-8")
    template.write_text(
        html.replace(
            "{{ article.title }}</h1>",
            "{{ article.title }}</h1>\n<div style='display:flex'>x</div>",
            1,
        ),
        encoding="utf-8",
    )
    env = {"PYTHONPATH": str(site)}
    where = run_cli(["--help"], folder, env)  # (any command: proves which copy runs)
    assert where.returncode == 0
    probe = subprocess.run(
        [sys.executable, "-c", "import newsletter; print(newsletter.__file__)"],
        cwd=folder,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert probe.stdout.startswith(str(site)), probe.stdout
    assert not any((p / "node_modules").exists() for p in (site, *site.parents))

    result = run_cli(["check", str(sample_articles()[0])], folder, env)
    assert "not checked against email clients" not in result.stdout + result.stderr
    assert "css-display-flex" in result.stdout, result.stdout + result.stderr
    assert "Outlook (Windows" in result.stdout


# -- leftover template syntax: ours, not the article's ---------------------------------------
def templating_article(folder: Path, braces: bool = True) -> Path:
    """A piece about templating: its own text quotes Jinja syntax (escaped, never evaluated)."""
    recap = (
        "A chef prints the menu with a template: {% for dish in menu %}{{ dish }}{% endfor %}, "
        "and the waiter reads {{ name }} aloud to every table."
        if braces
        else "A chef prints the menu with a template, and the waiter reads it aloud."
    )
    body = [
        "The Menu Card (2024): Ending Explained",
        "Why the kitchen's template never filled in.",
        "Release Year: 2024",
        "Rating: 7/10",
        "Author: Test Writer",
        "The Menu Card (2024): Ending Explained",
        "Quick Recap",
        recap,
        "What Happens in the Ending",
        "The last card still says {{ price }} where the price should be."
        if braces
        else "The last card has no price.",
    ]
    path = folder / "piece.txt"
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    return path


def test_article_quoting_template_syntax_passes_check_and_is_sent(tmp_path):
    write_default_config(tmp_path)
    piece = templating_article(tmp_path)
    checked = run_cli(["check", piece.name], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "placeholder" not in checked.stdout

    (tmp_path / "subs.csv").write_text("email,name\nann@example.com,Ann\n", encoding="utf-8")
    assert run_cli(["subscribers", "import", "subs.csv"], tmp_path).returncode == 0
    assert run_cli(["queue", "add", piece.name], tmp_path).returncode == 0
    sent = run_cli(["run", "--once"], tmp_path)
    assert sent.returncode == 0 and "sent 1" in sent.stdout, sent.stdout + sent.stderr
    (eml,) = (tmp_path / "outbox").rglob("*.eml")
    message = BytesParser(policy=default_policy).parsebytes(eml.read_bytes())
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "{% for dish in menu %}{{ dish }}{% endfor %}" in text  # shown as written
    assert "{{ price }}" in html and "Hi Ann," in text


@pytest.mark.parametrize("braces", [False, True], ids=["plain-article", "article-with-braces"])
def test_leftovers_of_our_templates_are_still_found(tmp_path, braces):
    write_default_config(tmp_path)
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    html = tmp_path / "templates" / "issue.html.j2"
    text = tmp_path / "templates" / "issue.txt.j2"
    # An override meant for an ESP's merge tags: Jinja leaves {{ name }} as it is.
    html.write_text(
        html.read_text(encoding="utf-8").replace(
            "Hi {{ placeholders.name_html }},", "Hi {% raw %}{{ name }}{% endraw %},"
        ),
        encoding="utf-8",
    )
    # A shouting greeting: the slot's name changes case, so personalisation cannot fill it.
    text.write_text(
        text.read_text(encoding="utf-8").replace(
            "Hi {{ placeholders.name_text }},", "HI {{ placeholders.name_text|upper }},"
        ),
        encoding="utf-8",
    )
    piece = templating_article(tmp_path, braces)
    checked = run_cli(["check", piece.name], tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    leftovers = [line for line in checked.stdout.splitlines() if "leftover placeholder" in line]
    assert len(leftovers) == 2, checked.stdout
    (ours,) = [line for line in leftovers if "'{{'" in line]
    (unfilled,) = [line for line in leftovers if "'unfilled placeholder'" in line]
    assert ours.startswith("error html:") and "'{{': ...Hi {{ name }}," in ours
    assert "times" not in ours  # the article's own braces are not counted
    assert unfilled.startswith("error text:4: leftover placeholder 'unfilled placeholder'")
    assert "...HI NL_" in unfilled
    assert "{%" not in checked.stdout  # only the article has {% ... %}
