"""Item-text templates: HTML cleaning, list separators, optional segments and errors."""

from __future__ import annotations

import pytest

from l3ae_bench.errors import ConfigError
from l3ae_bench.text import TextTemplate, TokenSeq, clean_text, render_value


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Fast &amp; fun", "Fast & fun"),
        ("<p>Fast &amp; fun</p><br/>Great", "Fast & fun Great"),
        ("<ul><li>One</li><li>Two</li></ul>", "One Two"),
        ("Ages&nbsp;8+", "Ages 8+"),
        ("3 < 4 and 5 > 2", "3 < 4 and 5 > 2"),
        ("&lt;b&gt;not a tag&lt;/b&gt;", "<b>not a tag</b>"),
        ("<script>var x = 1;</script>Visible", "Visible"),
        ("  many \n\t spaces  ", "many spaces"),
        ("Caf\u00e9 &eacute;", "Café é"),
    ],
)
def test_clean_text_cases(raw, clean):
    assert clean_text(raw) == clean


def test_clean_text_unescapes_once():
    assert clean_text("&amp;amp;") == "&amp;"


def test_render_value_types():
    assert render_value(None) == ""
    assert render_value(float("nan")) == ""
    assert render_value(["a", "", None, "b"]) == "a, b"
    assert render_value(["a", "b"], " > ") == "a > b"
    assert render_value(TokenSeq(["Toy", "Story"])) == "Toy Story"
    assert render_value({"Brand": "Acme", "Empty": ""}) == "Brand: Acme"
    assert render_value(1995.0) == "1995"
    assert render_value(4.5) == "4.5"


def test_template_fills_fields():
    template = TextTemplate("{title} ({year}). Genres: {genres}.")
    text = template.render({"title": "Heat", "year": "1995", "genres": ["Action", "Crime"]})
    assert text == "Heat (1995). Genres: Action, Crime."


def test_template_list_separator():
    template = TextTemplate("{categories: > }|{features:; }")
    text = template.render({"categories": ["Video Games", "PC"], "features": ["A", "B"]})
    assert text == "Video Games > PC|A; B"


def test_template_optional_segment_dropped():
    template = TextTemplate("{title}.[ Features: {features}.][ Store: {store}.]")
    assert template.render({"title": "Pad", "features": [], "store": "Acme"}) == "Pad. Store: Acme."


def test_template_optional_segment_kept():
    template = TextTemplate("{title}.[ Features: {features}.]")
    assert template.render({"title": "Pad", "features": ["Wireless"]}) == "Pad. Features: Wireless."


def test_template_empty_item_gives_empty_text():
    template = TextTemplate("[{title}.][ Store: {store}.]")
    assert template.render({"title": None, "store": ""}) == ""


def test_template_missing_field_renders_empty():
    assert TextTemplate("{title}[ ({year})]").render({"title": "Heat"}) == "Heat"


def test_template_unknown_field_names_fields():
    template = TextTemplate("{title} {color}")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['color'\].*\['title', 'year'\]"):
        template.check_fields(["title", "year"])


def test_template_nested_bracket_rejected():
    with pytest.raises(ConfigError, match="unbalanced or nested bracket"):
        TextTemplate("{title}[ a [b] ]")


def test_template_unbalanced_brace_rejected():
    with pytest.raises(ConfigError, match="not a valid template"):
        TextTemplate("{title")


def test_template_attribute_access_rejected():
    with pytest.raises(ConfigError, match="plain names"):
        TextTemplate("{title.upper}")


def test_template_no_double_period():
    template = TextTemplate("{title}.[ Description: {description}.]")
    text = template.render({"title": "Wow!", "description": ["Clear sound."]})
    assert text == "Wow! Description: Clear sound."
