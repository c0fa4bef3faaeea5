"""The app driven through AppTest: a session on its own RECIPE_HOME, and the steps every page test repeats."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app.py"


def start_app(home, monkeypatch) -> AppTest:
    """The app through its entrypoint, on its own RECIPE_HOME and default settings, after a first clean run."""
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    monkeypatch.delenv("RECIPE_MAX_UPLOAD_MB", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def no_errors(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def open_data(at, **params):
    at.query_params.update(params)
    at.switch_page("pages/data.py").run()
    no_errors(at)
    return at


def choose_dataset(at, name):
    box = at.sidebar.selectbox(key="w_dataset")
    box.select_index(box.options.index(name)).run()
    no_errors(at)


def open_train(at, dataset, target):
    at.switch_page("pages/train.py").run()
    choose_dataset(at, dataset)
    at.sidebar.selectbox(key="w_target").select(target).run()
    no_errors(at)
    return at


def open_tune(home, monkeypatch):
    """The Tune page through the entrypoint, on wine -> cultivar, as ann."""
    app = start_app(home, monkeypatch)
    app.switch_page("pages/tune.py").run()
    choose_dataset(app, "wine")
    app.sidebar.selectbox(key="w_target").select("cultivar").run()
    app.sidebar.text_input(key="w_author").input("ann").run()
    no_errors(app)
    return app
