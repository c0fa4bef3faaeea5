"""Who am I: the name typed in the sidebar rides in the URL, so a reload or a new tab keeps it; a name from the
URL is checked like any hostile text and shown literally (AppTest through the entrypoint)."""
import pytest
from app_session import APP, choose_dataset, no_errors, start_app
from streamlit.testing.v1 import AppTest

from recipe_core.safetext import markdown_literal

HOSTILE = "![x](http://ev.il/t.png) **bold** <img src=x onerror=alert(1)> :material/home:"  # 72 chars


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("recipe_home")


def fresh_session(home, monkeypatch, **params) -> AppTest:
    """A new browser tab (or a reload) that opens a URL with these query parameters."""
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    monkeypatch.delenv("RECIPE_MAX_UPLOAD_MB", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def author_box(at):
    return at.sidebar.text_input(key="w_author")


def test_the_name_in_the_url_fills_the_box_of_a_fresh_session(home, monkeypatch):
    at = fresh_session(home, monkeypatch, author="ann")
    no_errors(at)
    assert author_box(at).value == "ann"
    at.switch_page("pages/label.py").run()  # and every page knows who is working
    choose_dataset(at, "digits")
    at.sidebar.selectbox(key="w_target").select("digit").run()
    no_errors(at)
    assert author_box(at).value == "ann" and at.query_params["author"] == "ann"
    assert at.get("progress")[0].proto.text.endswith("labelled by ann")


def test_a_typed_name_goes_into_the_url_and_survives_a_reload(home, monkeypatch):
    at = start_app(home, monkeypatch)
    assert "author" not in at.query_params
    author_box(at).input("  bob   the  builder ").run()
    no_errors(at)
    assert at.query_params["author"] == "bob the builder"
    assert author_box(at).value == "bob the builder"
    again = fresh_session(home, monkeypatch, **at.query_params)  # the same URL in a new tab
    assert author_box(again).value == "bob the builder"
    author_box(at).input("").run()  # clearing the name takes it out of the URL
    no_errors(at)
    assert "author" not in at.query_params


def test_a_hostile_name_is_shown_literally_never_interpreted(home, monkeypatch):
    at = fresh_session(home, monkeypatch, author=HOSTILE)
    no_errors(at)
    assert author_box(at).value == HOSTILE  # a widget value: shown as typed
    at.switch_page("pages/label.py").run()
    choose_dataset(at, "digits")
    at.sidebar.selectbox(key="w_target").select("digit").run()
    no_errors(at)
    progress = at.get("progress")[0].proto.text
    assert progress.endswith(f"labelled by {markdown_literal(HOSTILE)}")  # every markdown character escaped
    shown = [e.value for e in [*at.markdown, *at.caption, *at.info, *at.success]] + [progress]
    assert not any(HOSTILE in text or "](" in text or "**bold**" in text or " <img" in text for text in shown)


@pytest.mark.parametrize("bad, why", [("ann\x00", "NUL"), ("x" * 81, "at most 80")])
def test_a_name_the_store_cannot_hold_is_refused_in_one_line(home, monkeypatch, bad, why):
    at = fresh_session(home, monkeypatch, author=bad)
    assert not at.exception
    assert len(at.error) == 1 and why in at.error[0].value and "\n" not in at.error[0].value
    assert author_box(at).value == "" and "author" not in at.query_params  # not used, and not kept
    author_box(at).input("cem").run()
    no_errors(at)
    assert at.query_params["author"] == "cem"
    author_box(at).input("cem\x00").run()  # typed: refused, the last good name stays
    assert len(at.error) == 1 and "NUL" in at.error[0].value
    assert author_box(at).value == "cem" and at.query_params["author"] == "cem"
