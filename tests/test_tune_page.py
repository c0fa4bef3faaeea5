"""The Tune page through AppTest: a new run from an earlier one, a random search and a learning curve started in
the background and watched to the end, ensembles of the best runs."""
import time

import pytest

from recipe_core import runs
from recipe_core.config import TrainConfig, load_settings
from recipe_core.store import Store
from test_pages import APP, choose_dataset, no_errors, start_app


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("tune_home")


@pytest.fixture
def at(home, monkeypatch):
    app = start_app(home, monkeypatch)
    app.switch_page("pages/tune.py").run()
    choose_dataset(app, "wine")
    app.sidebar.selectbox(key="w_target").select("cultivar").run()
    app.sidebar.text_input(key="w_author").input("ann").run()
    no_errors(app)
    return app


@pytest.fixture(scope="module")
def trained(home):
    """Two finished runs of wine -> cultivar, trained inline."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECIPE_HOME", str(home))
    mp.delenv("RECIPE_STORE_URL", raising=False)
    from recipe_core import datasets

    settings = load_settings()
    store = Store(settings.store_url)
    datasets.ensure_samples(settings, store, APP.parent / "sample_data")
    wine = store.get_dataset("wine")
    out = [runs.execute(settings, store, runs.create(store, wine, "cultivar", TrainConfig(model=m, checks=False),
                                                     author="ann").id) for m in ("linear", "gbm")]
    yield settings, store, out
    mp.undo()


def wait_for(at, done, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        if done():
            return
        time.sleep(1.5)
    raise AssertionError("timed out")


def test_new_run_from_this_one_records_parent_and_hypothesis(at, trained):
    settings, store, (linear, _) = trained
    at.selectbox(key="tune_parent").set_value(linear.id).run()
    assert at.button(key="tune_new_start").disabled  # nothing changed yet
    at.number_input(key=f"new:{linear.id}:l2").set_value(10.0).run()
    assert any("`l2`" in m.value and "**10" in m.value for m in at.markdown)  # the change, highlighted
    assert at.button(key="tune_new_start").disabled  # a hypothesis is required
    at.text_input(key=f"new:{linear.id}:hypothesis").input("more L2 should not help on 178 rows").run()
    at.button(key="tune_new_start").click().run()
    no_errors(at)
    child = store.get_run(at.session_state["tune_started"])
    assert (child.parent_id, child.hypothesis, child.config["l2"]) == (
        linear.id, "more L2 should not help on 178 rows", 10.0)
    at.number_input(key=f"new:{linear.id}:seed").set_value(5).run()
    assert any("2 things changed" in w.value for w in at.warning)  # l2 and seed: flagged before it starts


def test_a_random_search_runs_in_the_background_and_shows_its_results(at, trained):
    settings, store, _ = trained
    at.selectbox(key="search_model").set_value("linear").run()
    at.number_input(key="search_trials").set_value(5).run()
    at.button(key="search_start").click().run()
    no_errors(at)
    study = at.session_state["search_study"]
    wait_for(at, lambda: any(p.proto.text.startswith("5 of 5 trials ended") for p in at.get("progress")))
    no_errors(at)
    frame = next(df.value for df in at.dataframe if "trial" in df.value)
    assert len(frame) == 5 and set(frame["state"]) <= {"complete", "pruned"} and frame["l2"].nunique() == 5
    trial_runs = [r for r in store.list_runs() if "study:" + study in r.tags]
    assert len(trial_runs) == 5 and all(r.status == "finished" for r in trial_runs)
    assert len(at.get("plotly_chart")) >= 3  # importance, parallel coordinates, slices


def test_ensemble_the_top_runs(at, trained):
    settings, store, (linear, gbm) = trained
    at.number_input(key="ens_k").set_value(2).run()
    at.button(key="ens_top").click().run()
    no_errors(at)
    made = store.get_run(at.session_state["ens_made"])
    assert made.model == "ensemble" and len(made.config["members"]) == 2
    assert any(m.label == "Gain over the best member" for m in at.metric)


def test_a_learning_curve_from_the_page(at, trained):
    settings, store, (linear, _) = trained
    at.selectbox(key="curve_parent").set_value(linear.id).run()
    at.multiselect(key="curve_fractions").set_value([0.25, 1.0]).run()
    at.number_input(key="curve_seeds").set_value(2).run()
    at.button(key="curve_start").click().run()
    wait_for(at, lambda: any(p.proto.text == "4 of 4 runs ended" for p in at.get("progress")))
    no_errors(at)
    assert any(m.value.startswith(("Still improving", "Flattening", "Flat or worse")) for m in at.markdown)
