"""The Data page's row browser in plain values: filters as people read them, row links, pages, the detail."""
from collections import namedtuple

from recipe_core.data import browse

F = namedtuple("F", "column op value")
W = namedtuple("W", "kind column message")


def test_a_filter_reads_as_a_person_writes_it():
    assert browse.filter_text(F("petal_length", ">", "4")) == "petal_length > 4"
    assert browse.filter_text(F("species", "=", "setosa")) == "species = 'setosa'"
    assert browse.filter_text(F("x", "is missing", None)) == "x is missing"


def test_pages_round_up_and_never_fall_to_zero():
    assert [browse.n_pages(n) for n in (0, 1, 50, 51, 400)] == [1, 1, 1, 2, 8]
    assert browse.n_pages(13, 12) == 2


def test_a_row_link_is_followed_once_and_not_into_another_dataset():
    assert browse.linked_row(None, None, "d1") is None
    assert browse.linked_row("5", None, "d1") == 5  # a shared link, fresh session
    assert browse.linked_row("5", ("d1", "5"), "d1") is None  # the page put it there itself
    assert browse.linked_row("5", ("d0", "5"), "d1") is None  # left over from the previous dataset
    assert browse.linked_row("7", ("d1", "5"), "d1") == 7
    assert browse.linked_row("x'); --", None, "d1") == "x'); --"  # text: the detail says there is no such row


def test_the_page_holding_a_row_only_in_file_order():
    assert browse.page_holding(123, 400, browse.DEFAULT_QUERY) == 3
    assert browse.page_holding(0, 400, browse.DEFAULT_QUERY) == 1
    assert browse.page_holding(400, 400, browse.DEFAULT_QUERY) is None  # no such row
    assert browse.page_holding("x", 400, browse.DEFAULT_QUERY) is None
    sorted_query = ((), "", "", "key", False, None)
    assert browse.page_holding(123, 400, sorted_query) is None


def test_the_grid_key_changes_with_what_the_grid_shows():
    a = browse.grid_key("d1", browse.DEFAULT_QUERY, None, 0)
    assert a.startswith("rows_table:d1:") and a == browse.grid_key("d1", browse.DEFAULT_QUERY, None, 0)
    assert a != browse.grid_key("d1", browse.DEFAULT_QUERY, None, 50)
    assert a != browse.grid_key("d1", browse.DEFAULT_QUERY, ("n", True), 0)


def test_a_long_cell_is_cut_and_says_its_length():
    shown = browse.detail_values({"a": 1, "b": "x" * 30}, max_chars=10)
    assert shown == ["1", "xxxxxxxxxx… (30 characters)"]


def test_imbalance_and_warnings_by_kind():
    assert browse.imbalance_ratio([30, 10, 0]) == 30
    found = browse.by_kind([W("missing", "a", "1"), W("outliers", "b", "2"), W("missing", "c", "3")])
    assert list(found) == ["missing", "outliers"] and [w.column for w in found["missing"]] == ["a", "c"]
