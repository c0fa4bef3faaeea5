"""Text that users and files supply: checked before it is stored, and shown literally wherever it is shown.

A name, a class value or a note may hold markdown (`![x](http://host/track)` loads a remote image in every
teammate's browser), HTML, control characters or a NUL (which PostgreSQL refuses mid-transaction). Each kind of
display has one escaper here; the store gets only text that every backend can hold.
"""
from __future__ import annotations

import re

from recipe_core.errors import BadInput

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAKS = re.compile(r"[\r\n\t]+")
_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#+-.!|~:$=&\"'@^%")
# Where a word joiner goes: after a ':' or '@' that something follows (http://, :material/..:, :smile:, a@b), and
# inside www. ("score: 5" keeps its plain colon, so copied text stays as typed).
_AUTOLINK = re.compile(r"(?<=[:@])(?=\S)|(?<=www)(?=\.)", re.IGNORECASE)
WORD_JOINER = "\u2060"
_PLOTLY_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def check_text(value, what: str, max_chars: int | None = None) -> str:
    """The value as text the store can hold (no NUL, valid Unicode), else one line naming `what`."""
    text = str(value)
    if "\x00" in text:
        raise BadInput(f"{what} contains a NUL character (\\x00), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{what} is not valid Unicode text") from None
    if max_chars is not None and len(text) > max_chars:
        raise BadInput(f"{what} has {len(text):,} characters, at most {max_chars:,}")
    return text


def storable(value) -> str:
    """Text from a file that the store must keep whatever it holds (an uploaded file's name): NUL and other
    control characters become '?', and invalid Unicode is replaced."""
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("?", text.replace("\x00", "?"))


def one_line(value) -> str:
    """For messages: control characters and line breaks shown as '?' and spaces, so an error stays one line."""
    return _CONTROL.sub("?", _LINE_BREAKS.sub(" ", str(value)))


def markdown_literal(value) -> str:
    """Text shown literally inside Streamlit markdown (st.markdown, captions, alerts, widget labels): every
    character markdown could read as syntax is backslash-escaped, so no link, image, emphasis, HTML or
    colour directive survives. GFM links a bare URL, www. name or e-mail address, and Streamlit draws
    :material/...: icons, after the escapes are resolved: an invisible word joiner (U+2060) breaks those
    patterns."""
    text = _AUTOLINK.sub(WORD_JOINER, one_line(value))
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


def plotly_literal(value) -> str:
    """Text shown literally in a plotly title, axis, legend or hover label (plotly reads a subset of HTML:
    <a href>, <b>, <br>...)."""
    return "".join(_PLOTLY_ENTITIES.get(ch, ch) for ch in one_line(value))
