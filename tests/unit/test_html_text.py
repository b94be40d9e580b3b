import time

from engine.html_text import html_to_text


def test_markup_becomes_lines_of_text() -> None:
    html = (
        "<html><head><title>T</title><style>p { color: red }</style></head><body>"
        "<h1>Hi Ada</h1><p>Welcome &amp; <b>thanks</b>\n for   joining.</p>"
        "<ul><li>one</li><li>two</li></ul>Line<br>two<br/>three"
        "<table><tr><td>a</td><td>b</td></tr></table>end<script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == (
        "Hi Ada\n\nWelcome & thanks for joining.\n\none\ntwo\nLine\ntwo\nthree\n\na b\nend"
    )


def test_a_link_shows_its_address_unless_its_label_is_it() -> None:
    html = (
        '<p><a href="https://x.test/u?a=1&amp;b=2">Unsubscribe</a> '
        '<a href="https://x.test">https://x.test</a> <a href="mailto:hi@x.test">write</a> '
        '<a href="javascript:alert(1)">bad</a> <a>none</a></p>'
    )
    assert html_to_text(html) == (
        "Unsubscribe (https://x.test/u?a=1&b=2) https://x.test write (hi@x.test) bad none"
    )


def test_escaped_values_read_as_typed() -> None:
    # What a variable brought into the html, escaped there, is the typed text again.
    assert (
        html_to_text("<p>&lt;b&gt;Tom&lt;/b&gt; &amp; &#x27;Jerry&#x27;</p>")
        == "<b>Tom</b> & 'Jerry'"
    )


def test_broken_markup_is_text_not_an_error() -> None:
    assert html_to_text("<p>a < b</p><!-- c --><p>unclosed <b") == "a < b\n\nunclosed <b"
    assert html_to_text("") == ""
    assert html_to_text("<style>") == ""


def test_a_large_html_converts_in_linear_time() -> None:
    started = time.perf_counter()
    text = html_to_text("<p>" + "word " * 1_000_000 + "</p>")
    assert len(text) == 4_999_999
    assert time.perf_counter() - started < 5
