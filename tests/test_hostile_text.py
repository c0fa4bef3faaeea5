"""Text from users and files reaches Streamlit's markdown only escaped (AppTest): names, columns, classes, runs,
notes and error messages written as markdown images. tests/test_browser_hostile_text.py shows it in Chromium."""
import io
import zipfile

import pytest
from app_session import APP, no_errors
from planted import image, plant
from streamlit.testing.v1 import AppTest

from recipe_core.config import load_settings
from recipe_core.safetext import markdown_literal
from recipe_core.tracking.store import Store

BODIES = ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success", "toast")
HOST = "http://127.0.0.1:9"  # nothing listens there; the browser test plants the same values with a listener


def img(n: int) -> str:
    return image(HOST, n)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile_home")


@pytest.fixture(scope="module")
def planted(home):
    mp = pytest.MonkeyPatch()
    mp.setenv("RECIPE_HOME", str(home))
    mp.delenv("RECIPE_STORE_URL", raising=False)
    settings = load_settings()
    yield plant(settings, Store(settings.store_url), HOST)
    mp.undo()


def open_page(home, monkeypatch, page: str, planted: dict, **params) -> AppTest:
    """A fresh session that opens `page` on the hostile dataset and target, as a shared link would."""
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(dataset=planted["dataset"], target=planted["target"], **params)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def markdown_strings(at) -> list[str]:
    """Every string the page hands to Streamlit's markdown renderer: the bodies of markdown, captions, headings,
    alerts and toasts, progress texts, every label and help text, and the options of radios and segmented controls
    (selectbox and multiselect options, st.text, st.code, st.json and tables are plain text)."""
    out = []
    for node in [n for root in (at.main, at.sidebar) for n in walk(root)] + list(at.toast):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        if node.type in BODIES:
            out.append(proto.body)
        if node.type == "progress":
            out.append(proto.text)
        out += [getattr(proto, field) for field in ("label", "help") if hasattr(proto, field)]
        if node.type in ("radio", "select_slider"):
            out += list(proto.options)
        if node.type == "button_group":
            out += [option.content for option in proto.options]
    return out


def assert_escaped(at, planted: dict, *expected: str) -> None:
    """No hostile value reaches markdown as it is, and each expected value is there escaped."""
    shown = markdown_strings(at)
    hostile = [img(n) for n in range(40)] + [planted["link"], planted["child_name"]]
    raw = [s for s in shown if any(value in s for value in hostile)]
    assert raw == [], raw
    joined = "\n".join(shown)
    for value in expected:
        assert markdown_literal(value) in joined, value


def test_upload_names_and_columns(home, monkeypatch, planted):
    at = open_page(home, monkeypatch, "pages/data.py", planted)
    no_errors(at)
    csv = f'"{img(30)}","{img(30)}"\n1,2\n3,4\n'
    at.file_uploader(key="upload_file").set_value((img(31) + ".csv", csv.encode(), "text/csv"))
    at.text_input(key="upload_name").input(img(32))
    next(b for b in at.button if b.label == "Add dataset").click().run()
    no_errors(at)
    assert at.success[0].value == f"Added '{markdown_literal(img(32))}': 2 rows, 2 columns."
    assert_escaped(at, planted, img(32), img(31) + ".csv", f"column name '{img(30)}' is a duplicate")


def test_data_views(home, monkeypatch, planted):
    at = open_page(home, monkeypatch, "pages/data.py", planted)
    no_errors(at)
    assert_escaped(at, planted, img(10), img(9) + ".csv", f"its only value is '{img(8)}'")  # the caption, a warning
    at.segmented_control(key="data_view").set_value("Target").run()
    no_errors(at)
    assert_escaped(at, planted, img(3))
    at.segmented_control(key="data_view").set_value("Rows").run()
    at.text_input(key="filter_value").input(img(33))  # against the ID-like number column: refused, quoting both
    next(b for b in at.button if b.label == "Add filter").click().run()
    assert at.error and markdown_literal(img(33)) in at.error[0].value
    assert_escaped(at, planted, img(33), img(1))
    at.selectbox(key="filter_column").select(img(2))
    at.selectbox(key="filter_op").select("contains")
    at.text_input(key="filter_value").input(img(34))
    next(b for b in at.button if b.label == "Add filter").click().run()
    no_errors(at)
    at.selectbox(key="extremes_column").select(img(1) + "_2")
    next(b for b in at.button if b.label == "Smallest").click().run()
    no_errors(at)
    assert_escaped(at, planted, f"{img(2)} contains '{img(34)}'", f"values of {img(1)}_2")  # a button, a caption


def test_a_hostile_row_in_the_url(home, monkeypatch, planted):
    at = open_page(home, monkeypatch, "pages/data.py", planted, row=img(35))
    assert [e.value for e in at.error] == [f"No row {markdown_literal(repr(img(35)))} in this dataset."]


def test_label_page_classes_and_annotator(home, monkeypatch, planted):
    at = open_page(home, monkeypatch, "pages/label.py", planted)
    at.sidebar.text_input(key="w_author").input(img(36)).run()
    no_errors(at)
    assert [at.button(key=f"class:{k}").label for k in range(2)] == [markdown_literal(img(6)), markdown_literal(img(7))]
    at.button(key="class:0").click().run()
    no_errors(at)
    assert at.success[0].value.endswith(f" = {markdown_literal(img(6))}")
    assert_escaped(at, planted, f"labelled by {img(36)}", img(2))  # the progress text, the text column's header


def test_train_page_finished_and_failed_runs(home, monkeypatch, planted):
    at = open_page(home, monkeypatch, "pages/train.py", planted, run=planted["done"])
    no_errors(at)
    assert [s.value for s in at.subheader if s.value.startswith("Run ")] == [f"Run {markdown_literal(img(11))}"]
    assert_escaped(at, planted, f"by {img(12)}")
    at = open_page(home, monkeypatch, "pages/train.py", planted, run=planted["failed"])
    assert [s.value for s in at.subheader if s.value.startswith("Run ")] == [f"Run {markdown_literal(planted['link'])}"]
    assert [e.value for e in at.error] == [f"Run failed: {markdown_literal(img(16))}"]
    assert_escaped(at, planted)


def test_compare_page_changes_notes_and_metric(home, monkeypatch, planted):
    ids = ",".join(planted[k] for k in ("done", "failed", "child"))
    at = open_page(home, monkeypatch, "pages/compare.py", planted, runs=ids, metric="val_loss")
    at.selectbox(key="cmp_rank").select(img(25)).run()  # a metric name from a script
    no_errors(at)
    assert_escaped(at, planted, img(18), img(17), f"by {img(25)}")  # hypothesis, config change, the Top N button
    note = f"**{markdown_literal(img(21))}** on _{markdown_literal(img(11))}_ · "
    assert any(m.value.startswith(note) for m in at.markdown)


def test_import_of_runs_named_by_hostile_paths(home, monkeypatch, planted):
    at = open_page(home, monkeypatch, "pages/compare.py", planted)
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr(f"{img(37)}/version_0/metrics.csv", "step,val_loss\n0,1.0\n1,0.5\n")
    at.file_uploader(key="cmp_upload").set_value(("logs.zip", data.getvalue(), "application/zip"))
    at.run()
    at.button(key="cmp_import").click().run()
    no_errors(at)
    name = next(r.name for r in Store(load_settings().store_url).list_runs() if "img-37" in r.name)
    assert at.success and markdown_literal(name) in at.success[0].value and "![x](" in name
    assert_escaped(at, planted)


def test_tune_page_lists_the_change_escaped(home, monkeypatch, planted):
    at = open_page(home, monkeypatch, "pages/tune.py", planted, run=planted["done"])
    assert_escaped(at, planted, f'["{img(15)}"]')
