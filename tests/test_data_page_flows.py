"""The Data page as a user drives it: a new query starts over, the detail follows the clicked row, filters, banner."""
import json

import pytest
from app_session import APP, no_errors, open_data, start_app
from streamlit.testing.v1 import AppTest

import ui
from recipe_core.config import load_settings
from recipe_core.data import ingest
from recipe_core.safetext import markdown_literal
from recipe_core.tracking.store import Store

N_ROWS = 400  # 8 pages of 50
# n is the row's position; `key` sorts the rows in another order (descending n), so a re-sort moves every row.
CSV = "n,key,word\n" + "".join(f"{i},{N_ROWS - i},w{i % 7}\n" for i in range(N_ROWS))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("recipe_home_rows")


@pytest.fixture
def app(home, monkeypatch):
    monkeypatch.setenv("RECIPE_HOME", str(home))
    settings = load_settings()
    store = Store(settings.store_url)
    record = next((r for r in store.list_datasets() if r.name == "rows400"), None)
    if record is None:
        record = ingest.ingest_bytes(settings, store, CSV.encode(), source_name="rows400.csv", name="rows400")
    at = start_app(home, monkeypatch)
    at.query_params["dataset"] = record.id
    at = open_data(at)
    box = at.sidebar.selectbox(key="w_dataset")
    if box.value != record.id:
        box.select_index(box.options.index("rows400")).run()
    at.segmented_control(key="data_view").set_value("Rows").run()
    no_errors(at)
    at.dataset_id = record.id
    return at


def grid(at):
    (table,) = [d for d in at.dataframe if d.key and d.key.startswith("rows_table")]
    return table


def click_row(at, position):
    """What a click on the grid sends: the selected position, under the grid's own key."""
    at.session_state[grid(at).key] = {"selection": {"rows": [position], "columns": [], "cells": []}}
    at.run()
    no_errors(at)


def go_to_page(at, page):
    at.get("pagination")[0].set_value(page).run()
    no_errors(at)


def detail_rows(at):
    return [h.value for h in at.subheader if h.value.startswith("Row ")]


def detail_values(at):
    """The detail panel's table as {column: value}."""
    (table,) = [d for d in at.dataframe if list(d.value.columns) == ["column", "value"]]
    return dict(zip(table.value["column"], table.value["value"], strict=True))


def caption_count(at):
    return next(c.value for c in at.caption if "matching rows" in c.value)


# -- item 5: a new query starts at its first page, with nothing selected -----------------------------------------

def test_where_after_a_selection_on_a_deep_page_shows_its_rows(app):
    go_to_page(app, 7)
    assert list(grid(app).value.index)[:1] == [300]
    click_row(app, 3)
    assert detail_rows(app) == ["Row 303"]
    app.text_area(key=f"where:{app.dataset_id}").input("n < 46").run()
    no_errors(app)  # the old page raised IndexError here, and kept raising it on every rerun
    assert caption_count(app).startswith("46 matching rows") and not app.warning
    assert list(grid(app).value.index) == list(range(46))  # the first (and only) page, not an empty page 7
    assert detail_rows(app) == []  # the selection went with the old query
    app.run()
    no_errors(app)
    assert len(grid(app).value) == 46


@pytest.mark.parametrize("change", ["search", "sort", "filter"])
def test_any_new_query_goes_back_to_the_first_page_and_clears_the_selection(app, change):
    go_to_page(app, 3)
    click_row(app, 0)
    assert detail_rows(app) == ["Row 100"]
    if change == "search":
        app.text_input(key=f"search:{app.dataset_id}").input("w1").run()
        expected_first = 1
    elif change == "sort":
        app.selectbox(key=f"sort:{app.dataset_id}").select("key").run()
        expected_first = N_ROWS - 1  # smallest key first
    else:
        app.selectbox(key="filter_column").select("n")
        app.selectbox(key="filter_op").select(">=")
        app.text_input(key="filter_value").input("10")
        next(b for b in app.button if b.label == "Add filter").click().run()
        expected_first = 10
    no_errors(app)
    assert list(grid(app).value.index)[:1] == [expected_first]
    assert detail_rows(app) == []
    assert "row" not in app.query_params


# -- item 6: the detail shows the row that was clicked, never the one now at its position ------------------------

def test_the_detail_follows_the_clicked_row_across_pages(app):
    click_row(app, 5)
    assert detail_rows(app) == ["Row 5"] and detail_values(app)["n"] == "5"
    go_to_page(app, 2)  # position 5 of page 2 is row 55: it must not take over the detail
    assert detail_rows(app) == ["Row 5"] and detail_values(app)["n"] == "5"
    assert any("Not among the rows shown" in c.value for c in app.caption)
    go_to_page(app, 1)
    assert detail_rows(app) == ["Row 5"]
    assert not any("Not among the rows shown" in c.value for c in app.caption)
    assert app.query_params["row"] in ("5", ["5"])  # a copied URL opens the same row
    # a click on another page picks that row; clicking it again closes the detail
    go_to_page(app, 2)
    click_row(app, 7)
    assert detail_rows(app) == ["Row 57"] and detail_values(app)["n"] == "57"
    app.run()
    assert detail_rows(app) == ["Row 57"]
    app.session_state[grid(app).key] = {"selection": {"rows": [], "columns": [], "cells": []}}
    app.run()
    no_errors(app)
    assert detail_rows(app) == [] and "row" not in app.query_params


def test_a_row_picked_among_the_extremes_is_that_row(app):
    next(b for b in app.button if b.label == "Largest").click().run()  # the extremes column defaults to n
    no_errors(app)
    assert list(grid(app).value.index)[:1] == [N_ROWS - 1]
    click_row(app, 0)  # the click reruns the page: the extremes table must still be the one read
    assert detail_rows(app) == [f"Row {N_ROWS - 1}"]
    next(b for b in app.button if b.label == "Back to the matching rows").click().run()
    no_errors(app)
    assert list(grid(app).value.index)[:1] == [0] and detail_rows(app) == []


def test_a_link_to_a_row_then_another_dataset_does_not_show_that_row_there(app):
    click_row(app, 4)
    assert app.query_params["row"] in ("4", ["4"])
    box = app.sidebar.selectbox(key="w_dataset")
    box.select_index(box.options.index("wine")).run()
    no_errors(app)
    app.segmented_control(key="data_view").set_value("Rows").run()
    no_errors(app)
    assert detail_rows(app) == [] and "row" not in app.query_params


# -- item 16: Enter already added the filter; the button after it is harmless -----------------------------------

def test_add_filter_pressed_again_after_enter_is_harmless(app):
    app.selectbox(key="filter_column").select("n")
    app.selectbox(key="filter_op").select(">=")
    app.text_input(key="filter_value").input("390")
    # Enter in the value box submits the form: in AppTest that is the same submission as the button
    next(b for b in app.button if b.label == "Add filter").click().run()
    no_errors(app)
    assert caption_count(app).startswith("10 matching rows")
    next(b for b in app.button if b.label == "Add filter").click().run()  # the press that said "needs a value"
    no_errors(app)
    assert caption_count(app).startswith("10 matching rows")
    assert [b.label for b in app.button if b.label.startswith("✕")] == ["✕ " + markdown_literal("n >= 390")]
    assert any("Already filtering" in i.value for i in app.info)
    # A really empty value is still refused in one line.
    app.text_input(key="filter_value").input("")
    next(b for b in app.button if b.label == "Add filter").click().run()
    assert len(app.error) == 1 and "needs a value" in app.error[0].value and "\n" not in app.error[0].value


# -- item 13: the banner says what the profile table shows --------------------------------------------------------

def test_the_banner_counts_missing_values_and_flags_zeros_and_names(home, monkeypatch):
    monkeypatch.setenv("RECIPE_HOME", str(home))
    settings = load_settings()
    names = [f"Car {chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(32)]  # one name per row, with a space
    lines = ["name,size,a,b"]
    for i in range(32):
        size = "0" if i in (3, 9) else f"{5 + (i * 37 % 50) / 10:.1f}"  # 2 zeros; the rest from 5.0 up
        lines.append(f"{names[i]},{size},{'' if i in (1, 2, 3, 4) else i + 1},{'' if i in (7, 8, 9) else i % 5}")
    record = ingest.ingest_bytes(settings, Store(settings.store_url), ("\n".join(lines) + "\n").encode(),
                                   source_name="cars.csv", name="cars32")
    ui.catalog_changed()  # the sidebar's catalog is cached across AppTest runs of this process
    at = start_app(home, monkeypatch)
    at.query_params["dataset"] = record.id
    at = open_data(at)
    box = at.sidebar.selectbox(key="w_dataset")
    box.select_index(box.options.index("cars32")).run()
    no_errors(at)
    banner = [w.value for w in at.warning]
    assert any("7 missing values in 2 columns" in w for w in banner), banner
    assert any("2 zeros" in w for w in banner), banner
    assert any("32 distinct values in 32 rows" in w for w in banner), banner
    assert not at.success or not any("No warnings" in s.value for s in at.success)


def test_a_link_to_a_row_opens_the_page_that_holds_it(app, home, monkeypatch):  # app: rows400 is there
    monkeypatch.setenv("RECIPE_HOME", str(home))
    record = next(r for r in Store(load_settings().store_url).list_datasets() if r.name == "rows400")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update({"dataset": record.id, "row": "123"})  # e.g. "Open row" on a top-loss example
    at.run()
    no_errors(at)
    assert detail_rows(at) == ["Row 123"] and detail_values(at)["n"] == "123"
    assert list(grid(at).value.index)[:1] == [100]  # page 3, where row 123 is
    assert json.loads(grid(at).proto.selection_default)["selection"]["rows"] == [23]  # and it is highlighted
    assert not any("Not among the rows shown" in c.value for c in at.caption) and not at.warning
