"""The Tune page through AppTest: a new run from an earlier one, a random search and a learning curve started in
the background and watched to the end, ensembles of the best runs."""
import socket
import threading
import time

import pytest
from app_session import choose_dataset, no_errors, open_tune, start_app
from trained import trained_inline

from recipe_core.config import load_settings
from recipe_core.errors import BadInput


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("tune_home")


@pytest.fixture
def at(home, monkeypatch):
    return open_tune(home, monkeypatch)


@pytest.fixture(scope="module")
def trained(home):
    """Two finished runs of wine -> cultivar, trained inline."""
    with trained_inline(home, "wine", "cultivar", ("linear", "gbm"), author="ann") as (settings, store, out):
        yield settings, store, out


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


@pytest.fixture
def fake_scheduler():
    """A real listener where an attacker's "Dask scheduler" would be: it records every connection it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, address = server.accept()
            except OSError:
                continue
            seen.append(address)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join(5)
    server.close()


def test_a_visitor_cannot_make_the_server_connect_to_an_address(at, trained, fake_scheduler):
    port, seen = fake_scheduler
    typed = f"dask://127.0.0.1:{port}"
    assert at.selectbox(key="search_executor").options == ["local"]  # what the operator listed (default "local")
    assert not [t for t in at.text_input if "trials" in t.label.lower()]  # and no box to type an address into
    at.query_params["executor"] = typed
    at.selectbox(key="search_model").set_value("linear").run()
    at.number_input(key="search_trials").set_value(2).run()
    at.button(key="search_start").click().run()
    no_errors(at)
    with pytest.raises(BadInput, match="not one this server offers"):
        load_settings().executor_address(typed)  # the core refuses it too, by name
    time.sleep(2.0)
    assert seen == []  # nothing connected to the attacker's address


def test_an_operator_listed_cluster_is_offered_by_name(home, monkeypatch, trained, fake_scheduler):
    port, seen = fake_scheduler
    monkeypatch.setenv("RECIPE_EXECUTORS", f"local lab=dask://127.0.0.1:{port + 1 if port < 65535 else 1}")
    app = start_app(home, monkeypatch)
    app.switch_page("pages/tune.py").run()
    choose_dataset(app, "wine")
    app.sidebar.selectbox(key="w_target").select("cultivar").run()
    assert app.selectbox(key="search_executor").options == ["local", "lab"]
    app.selectbox(key="search_executor").set_value("lab").run()
    app.selectbox(key="search_model").set_value("linear").run()
    app.button(key="search_start").click().run()
    # the listed scheduler is down: one line, and no study starts (a TCP check; no Dask client in the web process)
    assert [e.value for e in app.error] and "cannot reach the Dask scheduler" in app.error[0].value
    assert "search_study" not in app.session_state
    assert seen == []
