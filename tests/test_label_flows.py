"""The Label page on duplicated, noisy data (AppTest through the entrypoint): each input is asked once with the
number of rows that share it, and identical inputs with different targets are reported as ambiguous, apart from
the suspect labels."""
from types import SimpleNamespace
from urllib.parse import parse_qs

import pandas as pd
import pytest
from app_session import choose_dataset, no_errors, start_app

from recipe_core.config import load_settings
from recipe_core.data import ingest
from recipe_core.labelling import labels, progress
from recipe_core.tracking.store import Store

# 40 inputs in 3 identical rows each (they agree on y), and 3 inputs in 30 rows each that do not (20 a, 10 b)
CLEAN = [{"x": k, "c": "u", "y": "a" if k % 2 else "b"} for k in range(40) for _ in range(3)]
NOISY = [{"x": 200 + k, "c": "n", "y": y} for k in range(3) for y in ["a"] * 20 + ["b"] * 10]
FRAME = pd.DataFrame(CLEAN + NOISY)
ROWS_PER_INPUT = FRAME.groupby(["x", "c"]).size()  # the oracle, from the table as built


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("recipe_home")


@pytest.fixture
def noisy(home, monkeypatch, tmp_path):
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    settings = load_settings()
    store = Store(settings.store_url)
    path = tmp_path / "noisy.csv"
    FRAME.to_csv(path, index=False)
    record = ingest.ingest_file(settings, store, path)
    return settings, store, record, labels.baseline(settings, store, record, "y")


def open_label(at, name):
    at.switch_page("pages/label.py").run()
    choose_dataset(at, "noisy")
    at.sidebar.selectbox(key="w_target").select("y").run()
    at.sidebar.text_input(key="w_author").input(name).run()
    no_errors(at)
    return at


def test_each_input_is_labelled_once_with_the_rows_it_stands_for(home, monkeypatch, noisy):
    _, _, _, base = noisy
    at = open_label(start_app(home, monkeypatch), "ann")
    n_items = len(base.items)
    assert at.get("progress")[0].proto.text.startswith(f"0 / {n_items}")
    seen = []
    for _ in range(n_items):
        row = int(at.subheader[0].value.split("row ")[-1])
        key = tuple(FRAME.loc[row, ["x", "c"]])
        assert any(c.value.startswith(f"{ROWS_PER_INPUT[key]} rows of the dataset have exactly this input")
                   for c in at.caption)
        seen.append(key)
        at.button(key="label_next").click().run()
    assert len(seen) == len(set(seen))  # no input asked twice


def test_ambiguous_inputs_are_reported_apart_from_suspect_labels(home, monkeypatch, noisy):
    _, store, _, base = noisy
    noisy_items = [i for i in base.items if FRAME.loc[i, "c"] == "n"]
    assert len(noisy_items) == 3  # each noisy input once (the seeded split has a validation row of each)
    clean_item = next(i for i in base.items if i not in noisy_items)
    wrong = {i: ("b" if base.truth[i] == "a" else "a") for i in [clean_item, *noisy_items]}
    for name in ("dee", "eve"):  # both finish, and both contradict the row's label on those items
        csv = "item,label\n" + "".join(f"{i},{wrong.get(i, base.truth[i])}\n" for i in base.items)
        labels.import_csv(store, base, name, csv.encode())
    at = open_label(start_app(home, monkeypatch), "eve")
    assert any(s.value == "The human baseline" for s in at.subheader)
    text = " ".join(m.value for m in at.markdown)
    assert "**Suspect labels**: 1 items" in text and "**Ambiguous inputs**: 3 inputs of the dataset (90 rows)" in text
    links = [e.proto for e in at.get("page_link") if e.proto.label.startswith("row ")]
    assert [link.label for link in links] == [f"row {clean_item}"]  # the noisy inputs are not suspects
    query = parse_qs(links[0].query_string)
    assert query["row"] == [str(clean_item)] and query["author"] == ["eve"]  # the link keeps who you are
    table = next(d.value for d in at.dataframe if "dataset labels" in d.value)
    assert sorted(table["item"]) == sorted(noisy_items)
    assert set(table["dataset labels"]) == {"a ×20, b ×10"} and set(table["rows"]) == {30}


def test_progress_counts_my_latest_labels_and_resumes_at_the_first_gap():
    def event(who, item, label):
        return SimpleNamespace(annotator=who, item=item, label=label)

    base = SimpleNamespace(items=[10, 11, 12, 13])
    events = [event("ann", 10, "a"), event("bob", 11, "b"), event("ann", 12, None), event("ann", 10, "b")]
    own = progress.progress(base, events, "ann")
    assert own.done == 2 and own.n_items == 4 and own.resume_at == 1 and not own.finished
    assert own.mine[10].label == "b" and own.mine[12].label is None  # the latest counts; a skip is labelled
    everything = events + [event("ann", 11, "a"), event("ann", 13, "a")]
    done = progress.progress(base, everything, "ann")
    assert done.finished and done.resume_at == 0
    assert progress.progress(base, events, "cem").resume_at == 0
