"""The Compare page through AppTest: runs from the API in the table, top N, the chart, the URL view, notes."""
import base64
import json

import numpy as np
import pytest
from app_session import no_errors, start_app

import recipe_core as rc


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("compare_home")


@pytest.fixture(scope="module")
def logged(home):
    """Six runs: two learning rates x three seeds, with a spike in one, and a child run with a hypothesis."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECIPE_HOME", str(home))
    mp.delenv("RECIPE_STORE_URL", raising=False)
    ids = {}
    for lr in (1e-3, 3e-3):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            with rc.start_run(name=f"lr{lr}-s{seed}", config={"lr": lr, "seed": seed}, tags=["grid"]) as run:
                for step in range(3000):
                    loss = np.exp(-step * lr) + rng.normal(0, 0.01) + (50.0 if (lr, seed, step) == (1e-3, 1, 1234)
                                                                       else 0.0)
                    run.log(step, epoch=step / 100, train_loss=loss, val_loss=loss + 0.1)
            ids[(lr, seed)] = run.run_id
    with rc.start_run(name="wd", config={"lr": 1e-3, "seed": 0, "wd": 1e-4}, parent=ids[(1e-3, 0)],
                      hypothesis="weight decay closes the gap") as run:
        for step in range(3000):
            run.log(step, val_loss=np.exp(-step * 1e-3))
    ids["wd"] = run.run_id
    yield ids
    mp.undo()


@pytest.fixture
def at(home, logged, monkeypatch):
    return start_app(home, monkeypatch)


def open_compare(at, **params):
    at.query_params.update(params)
    at.switch_page("pages/compare.py").run()
    no_errors(at)
    return at


def array(data) -> np.ndarray:
    """A trace's values as the browser gets them: plotly sends numpy arrays as base64 typed arrays."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), data["dtype"]).astype(float)
    return np.asarray(data, dtype=float)


def caption_with(at, text):
    return next(c.value for c in at.caption if text in c.value)


def test_api_runs_fill_the_table_and_top_n_charts_the_best(at, logged):
    open_compare(at)
    assert "7 of 7 runs" in caption_with(at, "runs ·")
    at.selectbox(key="cmp_rank").select("val_loss").run()
    next(b for b in at.button if b.label.startswith("Top 5")).click().run()
    no_errors(at)
    chosen = at.multiselect(key="cmp_runs").value
    assert len(chosen) == 5 and logged[(1e-3, 0)] not in chosen[:1] and set(chosen) <= set(logged.values())
    assert chosen[0] == logged["wd"]  # logged without the +0.1 offset: the lowest validation loss
    assert set(chosen[1:4]) == {logged[(3e-3, s)] for s in range(3)}  # then the fast learning rate
    shown = caption_with(at, "points shown")
    assert shown.startswith("10,000 of 15,000 points shown")  # 2,000 per run drawn of 3,000 stored
    assert at.query_params["runs"] == ",".join(chosen) and at.query_params["metric"] == "val_loss"


def test_a_shared_url_opens_the_same_chart(at, logged):
    runs = ",".join(logged[(1e-3, s)] for s in range(3))
    open_compare(at, runs=runs, metric="train_loss", smoothing="window", window="7", log_y="1", group_seeds="1",
                 band="std", x="epoch")
    assert at.multiselect(key="cmp_runs").value == runs.split(",")
    assert at.selectbox(key="cmp_metric").value == "train_loss"
    assert at.segmented_control(key="cmp_smooth").value == "window"
    assert at.number_input(key="cmp_window").value == 7
    assert at.toggle(key="cmp_logy").value and at.toggle(key="cmp_group").value
    assert at.segmented_control(key="cmp_x").value == "epoch"
    fig = at.get("plotly_chart")[0].proto.spec
    assert '"type":"log"' in fig.replace(" ", "") and "(3 seeds)" in fig
    # a change on the page goes back into the URL for the next person
    at.toggle(key="cmp_logy").set_value(False).run()
    no_errors(at)
    assert "log_y" not in at.query_params and at.query_params["window"] == "7"


def test_the_spike_stays_visible_after_downsampling(at, logged):
    open_compare(at, runs=logged[(1e-3, 1)], metric="train_loss", smoothing="none")
    fig = at.get("plotly_chart")[0].proto.spec
    assert caption_with(at, "points shown").startswith("2,000 of 3,000")
    values = np.concatenate([array(t["y"]) for t in json.loads(fig)["data"] if "y" in t])
    assert values.max() > 40  # the one spike of 50 in 3,000 points is drawn


def test_what_changed_and_notes(at, logged):
    open_compare(at, runs=f"{logged[(1e-3, 0)]},{logged['wd']}", metric="val_loss")
    assert any("wd" in str(df.value.get("key", [])) for df in at.dataframe if "key" in df.value)
    md = " ".join(m.value for m in at.markdown)
    assert "weight decay closes the gap" in md and "wd" in md
    note = "lower val loss, as hoped"
    at.text_area(key="cmp_note_text").input(note)
    next(b for b in at.button if b.label == "Add note").click().run()
    assert any("name in the sidebar" in e.value for e in at.error)  # a note needs its author
    at.sidebar.text_input(key="w_author").input("ann").run()
    at.text_area(key="cmp_note_text").input(note)
    next(b for b in at.button if b.label == "Add note").click().run()
    no_errors(at)
    assert note in [t.value for t in at.text] and any("ann" in m.value for m in at.markdown)


def test_a_stale_link_warns_and_still_draws(at, logged):
    open_compare(at, runs=f"{logged[(3e-3, 0)]},0123456789abcdef", metric="val_loss")
    assert any("0123456789abcdef" in w.value for w in at.warning)
    assert at.multiselect(key="cmp_runs").value == [logged[(3e-3, 0)]]


def test_a_link_with_a_new_view_replaces_the_one_on_screen(at, logged):
    open_compare(at, runs=logged[(1e-3, 0)], metric="val_loss", log_y="1")
    at.switch_page("pages/data.py").run()
    at.query_params.clear()
    open_compare(at)  # back through the navigation (no view in the URL): the session's view stays
    assert at.multiselect(key="cmp_runs").value == [logged[(1e-3, 0)]] and at.toggle(key="cmp_logy").value
    other = f"{logged[(3e-3, 0)]},{logged[(3e-3, 1)]}"
    at.query_params.clear()
    open_compare(at, runs=other, metric="train_loss")  # a link (e.g. from the Train page) with another view
    assert at.multiselect(key="cmp_runs").value == other.split(",")
    assert at.selectbox(key="cmp_metric").value == "train_loss" and not at.toggle(key="cmp_logy").value
