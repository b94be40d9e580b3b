import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import StepFailure
from engine.templates import (
    _PLACEHOLDER,
    MAX_RENDERED,
    MissingVariable,
    RenderedTooLarge,
    placeholder_names,
    render,
)


def test_missing_variable_is_a_step_failure() -> None:
    error = MissingVariable("FIRST_NAME")
    assert isinstance(error, StepFailure)
    assert error.code == "missing_variable"
    assert error.name == "FIRST_NAME"
    assert error.message == "Template variable `FIRST_NAME` has no value and no fallback"


def test_placeholder_names() -> None:
    text = "Hi {{{FIRST_NAME}}}, {{{ plan.name }}} {{{COMPANY|Acme}}} {{{FIRST_NAME}}} {{x}}"
    assert placeholder_names(text) == {"FIRST_NAME", "plan.name", "COMPANY"}


def test_placeholder_names_of_plain_text() -> None:
    assert placeholder_names("no placeholders {{here}} {{{ 1bad }}}") == set()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi {{{NAME}}}!", "Hi Ada!"),
        ("Hi {{{ NAME }}}!", "Hi Ada!"),
        ("Hi {{{NAME }}}!", "Hi Ada!"),
        ("{{{NAME}}}{{{NAME}}}", "AdaAda"),
        ("{{{NAME|friend}}}", "Ada"),
        ("{{{MISSING|friend}}}", "friend"),
        ("{{{ MISSING | dear friend }}}", "dear friend"),
        ("{{{MISSING|}}}", ""),
        ("{{{user.name}}}", "dotted"),
        ("{{{_private}}}", "p"),
    ],
)
def test_substitution(text: str, expected: str) -> None:
    variables = {"NAME": "Ada", "user.name": "dotted", "_private": "p"}
    assert render(text, variables, html=False) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (42, "42"),
        (2.5, "2.5"),
        (5.0, "5"),
        (-0.0, "0"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        ("text", "text"),
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        ([1, "x"], '[1,"x"]'),
    ],
)
def test_value_formatting(value: Any, expected: str) -> None:
    assert render("{{{V}}}", {"V": value}, html=False) == expected


def test_html_escapes_values() -> None:
    variables = {"V": "<b>\"Tom\" & 'Jerry'</b>"}
    assert render("<p>{{{V}}}</p>", variables, html=True) == (
        "<p>&lt;b&gt;&quot;Tom&quot; &amp; &#x27;Jerry&#x27;&lt;/b&gt;</p>"
    )


def test_html_escapes_json_values() -> None:
    assert render("{{{V}}}", {"V": {"a": "<"}}, html=True) == "{&quot;a&quot;:&quot;&lt;&quot;}"


def test_html_escapes_inline_fallbacks() -> None:
    assert render("{{{V|<i>&</i>}}}", {}, html=True) == "&lt;i&gt;&amp;&lt;/i&gt;"


def test_text_is_not_escaped() -> None:
    assert render("{{{V}}} {{{W|<w>}}}", {"V": "<a & b>"}, html=False) == "<a & b> <w>"


def test_template_markup_itself_is_not_escaped() -> None:
    assert render("<a href='x'>{{{V}}}</a>", {"V": "y"}, html=True) == "<a href='x'>y</a>"


def test_missing_variable_without_fallback() -> None:
    with pytest.raises(MissingVariable) as caught:
        render("Hi {{{FIRST_NAME}}}", {"OTHER": "x"}, html=True)
    assert caught.value.name == "FIRST_NAME"
    assert "`FIRST_NAME`" in caught.value.message


def test_none_value_is_empty_not_missing() -> None:
    assert render("[{{{V}}}]", {"V": None}, html=False) == "[]"


def test_none_value_takes_the_inline_fallback() -> None:
    # A contact without a first name reads "Hi there", not "Hi ", as with a declared fallback.
    assert render("Hi {{{V|there}}}", {"V": None}, html=True) == "Hi there"
    assert render("Hi {{{V| there }}}", {"V": None}, html=False) == "Hi there"
    assert render("[{{{V|}}}]", {"V": None}, html=False) == "[]"


@pytest.mark.parametrize(
    "text",
    [
        "{{NAME}}",
        "{ {{NAME}} }",
        "{{{NAME}}",
        "{{{NAME",
        "NAME}}}",
        "{{{ 1NAME }}}",
        "{{{NAME-X}}}",
        "{{{NAME.__class__()}}}",
        "{{{#each items}}}",
        "{{{}}}",
        "{{{a b}}}",
    ],
)
def test_other_braces_are_left_untouched(text: str) -> None:
    assert render(text, {"NAME": "Ada"}, html=False) == text


def test_values_are_not_re_rendered() -> None:
    # A value that looks like a placeholder is data, not template.
    assert render("{{{A}}}", {"A": "{{{B}}}", "B": "no"}, html=False) == "{{{B}}}"


def test_no_attribute_access_or_code() -> None:
    # The name is a plain dictionary key; dots never reach into objects.
    with pytest.raises(MissingVariable):
        render("{{{NAME.upper}}}", {"NAME": "ada"}, html=False)


@given(st.text().filter(lambda t: "{{{" not in t))
def test_text_without_placeholders_renders_unchanged(text: str) -> None:
    assert render(text, {}, html=False) == text
    assert placeholder_names(text) == set()


def test_rendering_stops_at_its_bound() -> None:
    blob = "&" * 60_000  # five times as long escaped
    text = "<p>{{{V}}}</p>" * 20
    assert len(render(text, {"V": blob}, html=False)) < MAX_RENDERED
    with pytest.raises(RenderedTooLarge) as caught:
        render(text, {"V": blob}, html=True, part="html")
    assert caught.value.code == "rendered_too_large"
    assert "The email's html would render to more than 5,000,000 characters" in str(caught.value)
    with pytest.raises(RenderedTooLarge):
        render("{{{V|x}}}" * 10, {"V": "y" * (MAX_RENDERED // 10 + 1)}, html=False)


@pytest.mark.parametrize(
    "text", ["{{{A|" + " " * 3000, "{{{A|" + "\t" * 3000 + "x", "{{{ A " + " " * 3000]
)
def test_an_unclosed_placeholder_renders_in_linear_time(text: str) -> None:
    """`{{{A|` and 3,000 spaces took 7 s to render (twice as many, 8 times as long)."""
    started = time.perf_counter()
    assert render(text, {}, html=True) == text
    assert placeholder_names(text) == set()
    assert time.perf_counter() - started < 0.5


# The pattern before it was made linear, which found the same placeholders.
_CUBIC = re.compile(r"\{\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|\s*([^{}]*?))?\s*\}\}\}")


@given(st.text(alphabet=" \t\n|{}Ax.", max_size=40))
def test_placeholders_and_fallbacks_are_found_as_before(text: str) -> None:
    def found(pattern: re.Pattern[str], strip: bool) -> list[tuple[Any, ...]]:
        return [
            (m.span(), m.group(1), m.group(2).strip() if strip and m.group(2) else m.group(2))
            for m in pattern.finditer(text)
        ]

    assert found(_PLACEHOLDER, strip=True) == found(_CUBIC, strip=False)
