"""The small shared helpers: sizes and counts (units), and the one line of an error (errors)."""
import pytest

from recipe_core.errors import first_line, unexpected
from recipe_core.units import ceil_div, count, human_bytes


@pytest.mark.parametrize("a, b, expected", [(0, 4, 0), (1, 4, 1), (4, 4, 1), (5, 4, 2), (178, 64, 3)])
def test_ceil_div(a, b, expected):
    assert ceil_div(a, b) == expected


@pytest.mark.parametrize("n, shown", [(300, "300 bytes"), (2048, "2 KB"), (1536 << 20, "1.5 GB"),
                                      (1000 << 20, "1000 MB"), (1023 << 20, "1023 MB"), (7 << 30, "7 GB")])
def test_human_bytes_never_prints_an_exponent(n, shown):
    assert human_bytes(n) == shown


def test_first_line_and_unexpected():
    assert first_line(ValueError("bad value\nin detail")) == "bad value"
    assert first_line(ValueError("  ")) == "ValueError"
    assert first_line(ValueError("x" * 50), max_chars=10) == "x" * 10
    assert unexpected(KeyError("k")) == "unexpected KeyError: 'k'"
    assert unexpected(MemoryError()) == "unexpected MemoryError: "


def test_count_puts_the_noun_in_the_right_form():
    assert count(1, "run") == "1 run" and count(0, "run") == "0 runs"
    assert count(2, "person", "people") == "2 people" and count(1200, "label") == "1,200 labels"
