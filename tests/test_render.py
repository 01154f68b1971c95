import email
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from newsletter.articles import read_article
from newsletter.render import (
    header_safe,
    inline_css,
    make_environment,
    personalize,
    render_issue,
)
from tests.conftest import write

HOSTILE = (
    '---\ntitle: "<script>alert(1)</script> {{ 7*7 }}\\r\\nBcc: x@evil.test"\n'
    'author: "{% raw %}{{ config }}{% endraw %}"\n---\n## Quick Recap\n\n'
    "A <img src=x onerror=alert(1)> recap with {{ 7*7 }} and {% if true %}x{% endif %}.\n\n"
    "## The Ending\n\nSecret ending.\n"
)


def test_autoescape_article_text_is_never_html_or_template_code(tmp_path, settings):
    article = read_article(write(tmp_path / "h.md", HOSTILE))
    rendered = render_issue([article], settings)
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "<img src=x" not in rendered.html
    visible = rendered.html.replace(
        rendered.placeholder_nonce, ""
    )  # the random nonce may hold "49"
    assert "{{ 7*7 }}" in visible and "49" not in visible
    assert "{% raw %}" in rendered.html
    # Subject: not escaped (it is a header, not HTML) but never carries a line break.
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert rendered.subject.startswith("<script>alert(1)</script> {{ 7*7 }} Bcc:")


def test_html_template_is_escaped_despite_its_j2_suffix(settings):
    env = make_environment(settings.templates_dir)
    assert env.autoescape("issue.html.j2") is True
    assert env.autoescape("issue.txt.j2") is False


def test_subscriber_name_is_escaped_in_html_and_plain_in_text(seed_path, settings):
    rendered = render_issue([read_article(seed_path)], settings)
    body = personalize(rendered, "Ann <b>& Co", "https://news.example/unsubscribe/tok")
    assert "Hi Ann &lt;b&gt;&amp; Co," in body.html
    assert "Hi Ann <b>& Co," in body.text
    assert 'href="https://news.example/unsubscribe/tok"' in body.html
    assert (
        rendered.placeholder_nonce not in body.html and rendered.placeholder_nonce not in body.text
    )


def test_css_is_inlined_and_media_queries_keep_important(seed_path, settings):
    rendered = render_issue([read_article(seed_path)], settings)
    assert 'class="title"' in rendered.html and "font-family:Georgia" in rendered.html.replace(
        ": ", ":"
    )
    assert "@media screen and (max-width" in rendered.html
    assert "prefers-color-scheme: dark" in rendered.html
    media = rendered.html[rendered.html.index("@media") :]
    assert "!important" in media[: media.index("</style>")]


def test_preheader_and_subject_are_spoiler_safe(seed, settings):
    article = read_article(seed.path)
    rendered = render_issue([article], settings)
    assert rendered.subject == seed.title
    assert rendered.preheader.startswith(seed.recap_start)
    hidden = rendered.html.index(rendered.preheader[:40])
    assert hidden < rendered.html.index("<table")  # the preview text comes first
    for section in article.spoiler_sections:
        assert section.text[:60] not in rendered.preheader


def test_spoilers_sit_behind_the_divider(seed_path, settings):
    article = read_article(seed_path)
    rendered = render_issue([article], settings)
    divider = rendered.html.index("Spoilers below")
    assert rendered.html.index("What Happens in the Ending") > divider
    assert rendered.html.index("Quick Recap") < divider
    text_divider = rendered.text.index("SPOILERS BELOW")
    assert rendered.text.index("WHAT HAPPENS IN THE ENDING") > text_divider


def test_an_issue_of_several_articles(seed, settings, tmp_path):
    other = read_article(
        write(
            tmp_path / "b.md",
            "---\ntitle: Second Film\nyear: 1999\n"
            "rating: 8\nauthor: B\n---\n## Quick Recap\nIt begins.\n",
        )
    )
    rendered = render_issue([read_article(seed.path), other], settings)
    # The subject template ({titles} by default), shortened to fit a phone's inbox.
    assert rendered.subject.startswith(seed.title.split(" (")[0])
    assert rendered.subject.endswith(", Second Film") and len(rendered.subject) <= 60
    assert "Second Film" in rendered.html and "Second Film" in rendered.text
    assert "It begins." in rendered.html
    # Several articles make a digest: cards, the endings on the articles' own pages.
    assert "Read the ending" in rendered.html and "Spoilers below" not in rendered.html


def test_header_safe_removes_line_breaks():
    assert header_safe("a\r\nBcc: b\x00c\u2028d") == "a Bcc: b c d"


def test_premailer_never_fetches_linked_stylesheets():
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.end_headers()
            self.wfile.write(b"p { color: red }")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/evil.css"
        html = (
            f'<html><head><link rel="stylesheet" href="{url}"></head><body><p>x</p></body></html>'
        )
        inline_css(html)
    finally:
        server.shutdown()
    assert hits == []


def test_plain_text_part_parses_as_email_body(seed, settings):
    rendered = render_issue([read_article(seed.path)], settings)
    msg = email.message_from_string("Subject: x\n\n" + rendered.text)
    assert seed.words in msg.get_payload()
