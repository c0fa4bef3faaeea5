"""The Tune page's background jobs as a person meets them (AppTest): the search with the default space really
starts, a search whose process fails says why, and a learning curve shows its progress until every run has
ended, then its verdict, and can be stopped."""
import time

import pytest
from app_session import choose_dataset, no_errors, start_app
from trained import trained_inline

from recipe_core.config import TrainConfig
from recipe_core.search import learning_curve, tuning
from recipe_core.training import jobs, runs

VERDICTS = ("Still improving", "Flattening", "Flat or worse", "Train at least two")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("tune_flows_home")


@pytest.fixture(scope="module")
def trained(home):
    """One finished linear run of wine -> cultivar, trained inline."""
    with trained_inline(home, "wine", "cultivar", ("linear",)) as (settings, store, (linear,)):
        yield settings, store, linear


@pytest.fixture
def at(home, monkeypatch, trained):
    return open_tune(home, monkeypatch)


def poll(at, done, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if done():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out; markdown: {[m.value for m in at.markdown][-5:]}, "
                         f"captions: {[c.value for c in at.caption][-5:]}, errors: {[e.value for e in at.error]}")


def progress_texts(at) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def test_the_default_mlp_space_starts_a_search_that_runs_to_its_end(at, trained):
    settings, store, _ = trained
    assert at.selectbox(key="search_model").value == "mlp"  # the default 5-setting space, ~375 characters of JSON
    at.number_input(key="search_trials").set_value(2).run()
    at.number_input(key="search_epochs").set_value(1).run()
    at.number_input(key="search_workers").set_value(1).run()  # one worker process: the test stays light
    at.button(key="search_start").click().run()
    no_errors(at)
    study = at.session_state["search_study"]
    poll(at, lambda: any(t.startswith("2 of 2 trials ended") for t in progress_texts(at)))
    no_errors(at)
    command = jobs.latest_command(settings, f"study:{study}")
    assert "--space-file" in command.argv and "--space" not in command.argv  # the spec travels in a file
    deadline = time.time() + 30
    while jobs.command_state(settings, command).active and time.time() < deadline:
        time.sleep(0.3)
    assert jobs.command_state(settings, command).status == "finished"
    trials = [r for r in store.list_runs() if "study:" + study in r.tags]
    assert len(trials) == 2 and {r.model for r in trials} == {"mlp"}


def open_tune(home, monkeypatch):
    app = start_app(home, monkeypatch)
    app.switch_page("pages/tune.py").run()
    choose_dataset(app, "wine")
    app.sidebar.selectbox(key="w_target").select("cultivar").run()
    return app


def test_a_search_whose_process_fails_shows_its_error_line_even_after_a_reload(tmp_path, monkeypatch):
    home = tmp_path / "home"  # its own: the failed study stays the newest one of wine -> cultivar
    at = open_tune(home, monkeypatch)
    no_errors(at)
    # The page allows more trials than the CLI will take: the background process refuses with one error line.
    monkeypatch.setattr(tuning, "MAX_TRIALS", 5000)
    at.selectbox(key="search_model").set_value("linear").run()
    at.number_input(key="search_trials").set_value(4321).run()
    at.button(key="search_start").click().run()
    study = at.session_state["search_study"]
    poll(at, lambda: bool(at.error), timeout=60)
    (error,) = [e.value for e in at.error]
    assert error.startswith("The search failed") and "4321" in error and "trials must be" in error
    assert not any("Starting the study" in c.value for c in at.caption)
    # a new session (a reload): the study never got made, yet its failed start is listed with its reason
    again = open_tune(home, monkeypatch)
    again.selectbox(key="search_pick").set_value(study).run()
    assert [e.value for e in again.error] == [error]


def test_a_learning_curve_shows_progress_until_every_run_ended_then_its_verdict(at, trained):
    settings, store, linear = trained
    curve, queued = learning_curve.start(store, linear, (0.25, 1.0), 2, author="ann")
    for run in queued[:3]:  # both shares have a finished run; one run still waits
        runs.execute(settings, store, run.id)
    at.selectbox(key="curve_parent").set_value(linear.id).run()
    no_errors(at)
    assert "3 of 4 runs ended" in progress_texts(at)
    assert not any(m.value.startswith(VERDICTS) for m in at.markdown)  # no verdict before the last run ends
    assert any("verdict comes when all 4 runs have ended" in c.value for c in at.caption)
    fig = at.get("plotly_chart")[0].proto.spec
    assert '"tickvals"' in fig and '"ticktext"' in fig  # the axis reads the row counts trained on
    at.button(key="curve_stop").click().run()  # cancels the waiting run
    no_errors(at)
    assert store.get_run(queued[3].id).status == "cancelled"
    assert "4 of 4 runs ended" in progress_texts(at)
    assert any(m.value.startswith(VERDICTS) for m in at.markdown)
    assert any("1 of 4 runs did not finish" in c.value for c in at.caption)
    assert "curve_stop" not in [b.key for b in at.button]


def test_a_learning_curve_whose_process_fails_says_why(at, trained, monkeypatch):
    settings, store, linear = trained
    # The process refuses the fractions the page sends (a share above 1): its error line reaches the page.
    real = jobs.start_command

    def bad_fractions(settings_, argv, **kwargs):
        argv = [("1.5" if a.startswith("0.1,") or a == "0.1" else a) for a in argv]
        return real(settings_, argv, **kwargs)

    monkeypatch.setattr(jobs, "start_command", bad_fractions)
    other = runs.execute(settings, store, runs.create(store, store.get_dataset("wine"), "cultivar",
                                                      TrainConfig(model="linear", l2=2.0, checks=False)).id)
    at.run()
    at.selectbox(key="curve_parent").set_value(other.id).run()
    at.multiselect(key="curve_fractions").set_value([0.1]).run()
    at.button(key="curve_start").click().run()
    poll(at, lambda: bool(at.error), timeout=60)
    assert at.error[0].value.startswith("The learning curve failed") and "fractions must be" in at.error[0].value
