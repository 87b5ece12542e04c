"""Item text: templates over item fields, with HTML stripped and entities unescaped.

Every dataset loader turns an item's fields (title, genres, features, ...) into one text through
a template such as ``"{title}[ Features: {features:; }.]"``:

- ``{field}`` inserts a field. Strings are cleaned (tags removed, entities such as ``&amp;``
  unescaped, whitespace collapsed). Lists are joined with ", ", token sequences of RecBole atomic
  files with a space, and dictionaries become ``key: value`` pairs joined with "; ".
- ``{field:SEP}`` joins a list field with the separator SEP instead, for example
  ``{categories: > }`` gives "Video Games > PC > Accessories".
- ``[ ... ]`` marks an optional segment: it is left out when every field inside it is empty, so
  an item without features gets no dangling "Features: .". Brackets cannot appear as literal
  text in a template.
- A period in the template right after a field whose text already ends a sentence (with
  ".", "!", "?" or "…") is left out, so "{description}." never gives "..".

Empty results are returned as empty strings; loaders count them and encoders decide what to do
with them.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from l3ae_bench.errors import ConfigError

_WHITESPACE = re.compile(r"\s+")
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
# Tags that separate words when rendered; their removal leaves a space instead of nothing.
_BLOCK_TAGS = {
    "br",
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "tr",
    "td",
    "th",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
}
_SKIPPED_TAGS = {"script", "style"}
_SENTENCE_ENDS = (".", "!", "?", "…")


class TokenSeq(list):
    """A RecBole `token_seq` value: a list of tokens rendered joined by a space by default."""


class _TextExtractor(HTMLParser):
    """Collect the text content of an HTML fragment, with entities already unescaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def clean_text(value: str) -> str:
    """Strip HTML tags, unescape entities once and collapse whitespace.

    Text without ``<`` or ``&`` skips the HTML parser. A ``<`` that does not open a tag, as in
    "3 < 4", stays text.
    """
    if "<" in value:
        extractor = _TextExtractor()
        extractor.feed(value)
        extractor.close()
        value = "".join(extractor.parts)
    elif "&" in value:
        value = html.unescape(value)
    return _WHITESPACE.sub(" ", value).strip()


def render_value(value: Any, separator: str | None = None) -> str:
    """Render one field value as clean text; `separator` joins list elements."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from a missing table cell
        return ""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        pairs = [(clean_text(str(key)), render_value(item)) for key, item in value.items()]
        return "; ".join(f"{key}: {text}" for key, text in pairs if key and text)
    if isinstance(value, list | tuple):
        if separator is None:
            separator = " " if isinstance(value, TokenSeq) else ", "
        parts = [render_value(item) for item in value]
        return separator.join(part for part in parts if part)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return clean_text(str(value))


@dataclass(frozen=True)
class _Field:
    name: str
    separator: str | None


@dataclass(frozen=True)
class _Segment:
    parts: tuple[tuple[str, _Field | None], ...]
    """Literal text, each followed by the field rendered after it (None at the end)."""
    optional: bool

    @property
    def fields(self) -> list[_Field]:
        return [field for _, field in self.parts if field is not None]


class TextTemplate:
    """A parsed item-text template; see the module docstring for its syntax.

    `setting` names the config key in error messages, such as ``dataset.text_template``.
    """

    def __init__(self, template: str, setting: str = "dataset.text_template") -> None:
        self.template = template
        self.setting = setting
        self._segments = self._parse(template)
        self.fields = sorted({field.name for seg in self._segments for field in seg.fields})

    def _parse(self, template: str) -> list[_Segment]:
        segments = []
        position = 0
        for match in _OPTIONAL.finditer(template):
            if match.start() > position:
                segments.append(self._segment(template[position : match.start()], False))
            segments.append(self._segment(match.group(1), True))
            position = match.end()
        if position < len(template):
            segments.append(self._segment(template[position:], False))
        return segments

    def _segment(self, text: str, optional: bool) -> _Segment:
        if "[" in text or "]" in text:
            raise ConfigError(
                f"{self.setting} {self.template!r} has an unbalanced or nested bracket in "
                f"{text!r}. Brackets mark optional segments, [ ... ], and cannot nest."
            )
        parts = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as error:
            raise ConfigError(
                f"{self.setting} {self.template!r} is not a valid template ({error}). Write "
                "fields as {name} or {name:separator}, and double braces for literal ones."
            ) from error
        for literal, name, spec, conversion in parsed:
            if name is None:
                parts.append((literal, None))
                continue
            if not name.isidentifier() or conversion:
                raise ConfigError(
                    f"{self.setting} {self.template!r} has the field {{{name}}}; fields must "
                    "be plain names such as {title}, optionally with a list separator."
                )
            parts.append((literal, _Field(name, spec if spec else None)))
        return _Segment(tuple(parts), optional)

    def check_fields(self, available: set[str] | list[str]) -> None:
        """Raise `ConfigError` if the template uses a field outside `available`."""
        unknown = [name for name in self.fields if name not in set(available)]
        if unknown:
            raise ConfigError(
                f"{self.setting} {self.template!r} uses the unknown field(s) {unknown}; the "
                f"available fields are {sorted(available)}."
            )

    def render(self, values: Mapping[str, Any]) -> str:
        """Fill the template from one item's field values and return the cleaned text."""
        pieces = []
        for segment in self._segments:
            rendered = [
                (literal, render_value(values.get(field.name), field.separator) if field else "")
                for literal, field in segment.parts
            ]
            if segment.optional and segment.fields and not any(text for _, text in rendered):
                continue
            for literal, text in rendered:
                if literal.startswith(".") and pieces and pieces[-1].endswith(_SENTENCE_ENDS):
                    literal = literal[1:]
                pieces.append(literal)
                pieces.append(text)
        return _WHITESPACE.sub(" ", "".join(pieces)).strip()
