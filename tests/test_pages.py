"""Every page renders through the entrypoint (AppTest); the Data page's upload, filter, search, sort and paging."""
import time

import pytest
from app_session import APP, choose_dataset, no_errors, open_data, open_train, start_app
from streamlit.testing.v1 import AppTest

from recipe_core.config import load_settings
from recipe_core.safetext import markdown_literal
from recipe_core.tracking.store import Store

PAGES = ["pages/data.py", "pages/label.py", "pages/train.py", "pages/compare.py", "pages/tune.py"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("recipe_home")


@pytest.fixture
def app(home, monkeypatch):
    return start_app(home, monkeypatch)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_the_shared_sidebar(app, page):
    app.switch_page(page).run()
    no_errors(app)
    assert app.sidebar.selectbox(key="w_dataset").value  # the sample datasets are there at once
    assert app.title[0].value


def test_samples_are_offered_on_first_start(app):
    names = app.sidebar.selectbox(key="w_dataset").options
    for sample in ("breast_cancer", "wine", "diabetes", "tips", "gapminder", "digits", "noise"):
        assert sample in names


def test_upload_a_csv_then_filter_search_sort_and_page(app):
    open_data(app)
    csv = "city,temp,note\n" + "".join(f"{'Oslo' if i % 2 else 'Lima'},{i},row {i}\n" for i in range(120))
    app.file_uploader(key="upload_file").set_value(("weather.csv", csv.encode(), "text/csv"))
    submit = next(b for b in app.button if b.label == "Add dataset")
    submit.click().run()
    no_errors(app)
    assert any("Added 'weather': 120 rows, 3 columns." in s.value for s in app.success)
    assert app.sidebar.selectbox(key="w_dataset").value is not None

    app.segmented_control(key="data_view").set_value("Rows").run()
    no_errors(app)
    assert any("120 matching rows" in c.value for c in app.caption)

    # filter builder: temp >= 100
    add_filter(app, "temp", ">=", "nope")
    assert app.error and "number" in app.error[0].value  # refused, and not kept
    add_filter(app, "temp", ">=", "100")
    no_errors(app)
    assert any("20 matching rows" in c.value for c in app.caption)

    # free-text search within the filtered rows, case-insensitive
    app.text_input(key=f"search:{current(app)}").input("OSLO").run()
    no_errors(app)
    assert any("10 matching rows" in c.value for c in app.caption)
    table = app.dataframe[0].value
    assert set(table["city"]) == {"Oslo"}

    # sort descending
    app.selectbox(key=f"sort:{current(app)}").select("temp")
    app.toggle(key=f"desc:{current(app)}").set_value(True).run()
    no_errors(app)
    assert list(app.dataframe[0].value["temp"])[:3] == [119, 117, 115]


def test_paging_through_rows(app):
    open_data(app)
    choose_dataset(app, "digits")
    app.segmented_control(key="data_view").set_value("Rows").run()
    no_errors(app)
    first = app.dataframe[0].value
    pager = app.get("pagination")[0]
    pager.set_value(3).run()
    no_errors(app)
    third = app.dataframe[0].value
    assert list(third.index)[:1] == [100] and list(first.index)[:1] == [0]


def test_bad_upload_shows_one_line_and_registers_nothing(app):
    open_data(app)
    before = app.sidebar.selectbox(key="w_dataset").options
    app.file_uploader(key="upload_file").set_value(("junk.csv", b"\x00\xff\x13" * 500, "text/csv"))
    next(b for b in app.button if b.label == "Add dataset").click().run()
    assert not app.exception
    assert len(app.error) == 1 and "\n" not in app.error[0].value
    assert app.sidebar.selectbox(key="w_dataset").options == before


def test_where_box_refuses_file_access(app):
    open_data(app)
    choose_dataset(app, "wine")
    app.segmented_control(key="data_view").set_value("Rows").run()
    where_key = f"where:{current(app)}"
    app.text_area(key=where_key).input("alcohol > (SELECT count(*) FROM read_csv('/etc/passwd'))").run()
    assert not app.exception
    assert app.error and "\n" not in app.error[0].value
    app.text_area(key=where_key).input("alcohol > 14").run()
    no_errors(app)
    assert all(app.dataframe[0].value["alcohol"] > 14)


def test_overview_columns_and_target_views(app):
    open_data(app, dataset="", target="")
    choose_dataset(app, "breast_cancer")
    app.sidebar.selectbox(key="w_target").select("diagnosis").run()
    no_errors(app)
    assert app.query_params["target"] == ["diagnosis"] or app.query_params["target"] == "diagnosis"
    assert app.dataframe  # the profile table
    app.segmented_control(key="data_view").set_value("Columns").run()
    no_errors(app)
    assert len(app.get("plotly_chart")) == 12
    app.segmented_control(key="data_view").set_value("Target").run()
    no_errors(app)
    assert len(app.get("plotly_chart")) == 2


def test_a_shared_url_opens_the_same_dataset_and_target(app):
    wine = Store(load_settings().store_url).get_dataset("wine")
    fresh = AppTest.from_file(str(APP), default_timeout=120)
    fresh.query_params["dataset"] = wine.id
    fresh.query_params["target"] = "cultivar"
    fresh.run()
    no_errors(fresh)
    assert fresh.sidebar.selectbox(key="w_dataset").value == wine.id
    assert fresh.sidebar.selectbox(key="w_target").value == "cultivar"


def add_filter(at, column, op, value):
    at.selectbox(key="filter_column").select(column)
    at.selectbox(key="filter_op").select(op)
    at.text_input(key="filter_value").input(value)
    next(b for b in at.button if b.label == "Add filter").click().run()


def current(at):
    """The selected dataset's id: the Rows view keys its widgets by it."""
    return at.sidebar.selectbox(key="w_dataset").value


def test_override_a_column_type(app):
    open_data(app)
    choose_dataset(app, "tips")
    table = app.dataframe[0].value
    assert table.set_index("column").loc["size", "kind"] == "numeric"
    app.selectbox(key="override_column").select("size")
    app.selectbox(key="override_kind").select("categorical")
    next(b for b in app.button if b.label == "Apply").click().run()
    no_errors(app)
    table = app.dataframe[0].value
    assert table.set_index("column").loc["size", "kind"] == "categorical"
    assert Store(load_settings().store_url).get_dataset("tips").column("size").kind == "categorical"


def test_a_bad_setting_is_one_line_not_a_traceback(home, monkeypatch):
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.setenv("RECIPE_MAX_UPLOAD_MB", "lots")
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    # shown as text: the message quotes what was typed (escaped once, by safetext.markdown_literal)
    assert [e.value for e in at.error] == [markdown_literal("RECIPE_MAX_UPLOAD_MB must be a number of megabytes, "
                                                            "not 'lots'")]


def test_wide_and_long_cells_do_not_break_the_page(app):
    open_data(app)
    header = ",".join(f"c{i}" for i in range(5000))
    body = "".join(",".join(str((r * 7 + i) % 13) for i in range(5000)) + "\n" for r in range(20))
    app.file_uploader(key="upload_file").set_value(("wide.csv", (header + "\n" + body).encode(), "text/csv"))
    next(b for b in app.button if b.label == "Add dataset").click().run(timeout=180)
    no_errors(app)
    assert any("5,000 columns" in s.value for s in app.success)
    app.segmented_control(key="data_view").set_value("Rows").run()
    no_errors(app)
    assert app.dataframe[0].value.shape == (20, 5000)

    long_text = "x" * 2_000_000
    app.file_uploader(key="upload_file").set_value(("long.csv", f"id,text\n1,{long_text}\n2,short\n".encode(),
                                                    "text/csv"))
    next(b for b in app.button if b.label == "Add dataset").click().run()
    no_errors(app)
    app.segmented_control(key="data_view").set_value("Rows").run()
    no_errors(app)
    assert len(app.dataframe[0].value["text"].iloc[0]) <= 501  # cut for display; the row detail has more


def test_a_link_to_a_row_opens_its_detail(app):
    wine = Store(load_settings().store_url).get_dataset("wine")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update({"dataset": wine.id, "row": "5"})
    at.run()
    no_errors(at)
    assert at.segmented_control(key="data_view").value == "Rows"
    assert "Row 5" in [h.value for h in at.subheader]
    assert not at.warning  # no "widget created with a default value but also set via Session State"


# -- the Train page ------------------------------------------------------------------------------------------
def train_on_page(at, model, timeout=180, **numbers):
    at.segmented_control(key="train_model").set_value(model)
    for key, value in numbers.items():
        at.number_input(key=f"train_{key}").set_value(value)
    next(b for b in at.button if b.label == "Train").click().run()
    no_errors(at)
    store = Store(load_settings().store_url)
    run_id = at.session_state["train_run"]
    deadline = time.monotonic() + timeout
    while store.get_run(run_id).active:  # the page polls; the job runs in its own process
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.5)
        at.run()
        no_errors(at)
    at.run()
    no_errors(at)
    return store.get_run(run_id)


def test_train_page_end_to_end(app):
    at = open_train(app, "wine", "cultivar")
    assert any("124 train · 27 validation · 27 test" in m.value for m in at.markdown)
    prior = train_on_page(at, "prior")
    assert prior.status == "finished" and prior.author == "anonymous"
    mlp = train_on_page(at, "mlp", epochs=300)
    assert mlp.status == "finished", mlp.reason
    verdicts = [m.value for m in at.markdown if "**" in m.value and ("pass" in m.value or "FAIL" in m.value)]
    assert len(verdicts) == 5 and all(v.startswith(":green[") for v in verdicts), verdicts
    # the leaderboard has both runs; the views of the shown run are there
    board = at.dataframe(key="train_board").value
    assert set(board["model"]) == {"prior", "mlp"} and board["model"].iloc[0] == "mlp"
    assert any("whole split" in m.value for m in at.markdown)
    assert at.query_params["run"] == mlp.id
    labels = [t.label for t in at.tabs]
    assert "The batch the net sees" in labels and "Top-loss examples" in labels


def test_train_page_refuses_a_hopeless_target_in_one_line(app):
    # regression on a text column is refused before any run is registered
    at = open_train(app, "tips", "day")
    task_box = next(s for s in at.selectbox if s.label == "Task")
    task_box.select("regression").run()
    assert [e.value for e in at.error] == [markdown_literal("target 'day' is not numeric, so it cannot be a "
                                                            "regression target")]
    assert not at.exception


# -- the Label page ------------------------------------------------------------------------------------------
def open_label(at, dataset, target, name):
    at.switch_page("pages/label.py").run()
    choose_dataset(at, dataset)
    at.sidebar.selectbox(key="w_target").select(target).run()
    at.sidebar.text_input(key="w_author").input(name).run()
    no_errors(at)
    return at


def test_label_page_keyboard_flow_and_resume(app):
    at = open_label(app, "digits", "digit", "ann")
    assert at.get("progress")[0].proto.text.startswith("0 / 100")
    assert at.get("plotly_chart")  # the 8x8 pixels are drawn as an image
    first = at.subheader[0].value
    at.text_input(key="label_note").input("a closed loop")
    at.button(key="class:0").click().run()  # the "0" key
    no_errors(at)
    assert at.success[0].value.startswith("Stored: item") and at.get("progress")[0].proto.text.startswith("1 / 100")
    assert at.subheader[0].value != first
    at.button(key="label_skip").click().run()  # "S"
    at.button(key="label_back").click().run()  # Left
    at.button(key="label_back").click().run()
    assert at.subheader[0].value == first and any("Your label: 0" in c.value for c in at.caption)
    store = Store(load_settings().store_url)
    record = store.get_dataset("digits")
    mine = [e for e in store.label_events(record.id, "digit") if e.annotator == "ann"]
    assert [e.label for e in mine] == ["0", None] and mine[0].note == "a closed loop"
    assert any("Others' labels stay hidden" in c.value for c in at.caption)
    # a new session of the same person resumes at the first item not yet labelled
    again = AppTest.from_file(str(APP), default_timeout=120)
    again.run()
    again = open_label(again, "digits", "digit", "ann")
    assert again.subheader[0].value.startswith("Item 3 of 100")


def test_label_results_after_finishing(app):
    from recipe_core.config import TrainConfig
    from recipe_core.labelling import labels
    from recipe_core.training import runs

    settings = load_settings()
    store = Store(settings.store_url)
    record = store.get_dataset("wine")
    base = labels.baseline(settings, store, record, "cultivar")
    wrong = {base.items[0]: next(c for c in base.classes if c != base.truth[base.items[0]])}
    for name in ("dee", "eve"):
        csv = "item,label\n" + "".join(f"{i},{wrong.get(i, base.truth[i])}\n" for i in base.items)
        labels.import_csv(store, base, name, csv.encode())
    prior = runs.execute(settings, store, runs.create(store, record, "cultivar", TrainConfig(model="prior")).id)
    at = open_label(app, "wine", "cultivar", "eve")
    no_errors(at)
    assert any(s.value == "The human baseline" for s in at.subheader)
    scores = next(d.value for d in at.dataframe if "who" in d.value)
    assert set(scores["who"]) >= {"dee", "eve", prior.name}
    human = scores[scores["who"] == "eve"].iloc[0]
    assert human["accuracy"] == pytest.approx((len(base.items) - 1) / len(base.items))
    assert any(e.proto.label == f"row {base.items[0]}" for e in at.get("page_link"))  # the suspect label, linked
