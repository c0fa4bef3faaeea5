"""Renaming, retagging, archiving, deleting and undoing runs on the Compare page (views/lifecycle.py), through
AppTest: in single-user mode (everything allowed) and signed in as a team's viewer, member and admin."""
from types import SimpleNamespace

import pytest
from app_session import no_errors, start_app

import recipe_core as rc
from recipe_core.config import load_settings
from recipe_core.safetext import markdown_literal
from recipe_core.tracking import access, users
from recipe_core.tracking.store import Store

ANN = "ann@example.org"  # the author of every run here
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "recipe",
        "client_secret": "s", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Three runs by ann: a base, a child that starts from it, and an unrelated one."""
    home = tmp_path / "home"
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    ids = {}
    for name, parent in (("base", None), ("child", "base"), ("other", None)):
        with rc.start_run(name=name, config={"lr": 1e-3, "name": name}, parent=ids.get(parent), author=ANN,
                          tags=["grid"] if name != "other" else []) as run:
            for step in range(20):
                run.log(step, val_loss=1.0 / (step + 1))
        ids[name] = run.run_id
    return SimpleNamespace(path=home, ids=ids)


def store() -> Store:
    return Store(load_settings().store_url)


def open_compare(at):
    at.switch_page("pages/compare.py").run()
    no_errors(at)
    return at


def signed_in(at, name, role):
    """The app in team mode, signed in as name with this role (None: never given one, a viewer)."""
    if role is not None:
        users.set_role(store(), access.operator(), name, role)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": name, "email_verified": True, "sub": name}
    return open_compare(at)


def table_names(at) -> list[str]:
    return at.dataframe(key="cmp_table").value["name"].tolist()


def pick(at, run_id):
    at.selectbox(key="cmp_edit_pick").select(run_id).run()
    no_errors(at)


def click(at, label):
    buttons = [b for b in at.button if b.label == label]
    assert len(buttons) == 1, [b.label for b in at.button]
    buttons[0].click().run()


def edit_controls(at) -> list[str]:
    keys = [w.key for kind in ("button", "text_input", "text_area", "multiselect") for w in at.get(kind)]
    return [k for k in keys if k and k.startswith("lc_")]


def test_a_renamed_run_shows_its_new_name_in_the_table(home, monkeypatch):
    at = open_compare(start_app(home.path, monkeypatch))
    assert sorted(table_names(at)) == ["base", "child", "other"]
    pick(at, home.ids["other"])
    at.text_input(key=f"lc_name:run:{home.ids['other']}").input("  the   better one ")
    click(at, "Rename")
    no_errors(at)
    assert sorted(table_names(at)) == ["base", "child", "the better one"]  # spaces as the store keeps them
    assert any("Renamed to" in s.value for s in at.success)
    at.text_input(key=f"lc_name:run:{home.ids['other']}").input(" ")
    click(at, "Rename")
    assert [e.value for e in at.error] == ["give a name\\: it cannot be empty"]  # one line (shown literally)
    assert store().get_run(home.ids["other"]).name == "the better one"


def test_tags_set_on_compare_are_offered_by_the_tag_filter(home, monkeypatch):
    at = open_compare(start_app(home.path, monkeypatch))
    assert at.multiselect(key="cmp_f_tags").options == ["grid"]
    pick(at, home.ids["other"])
    run_id = home.ids["other"]
    at.multiselect(key=f"lc_tags:{run_id}").set_value(["grid", "keeper"])
    at.text_area(key=f"lc_hyp:{run_id}").input("a smaller lr should not matter")
    click(at, "Save tags and hypothesis")
    no_errors(at)
    assert at.multiselect(key="cmp_f_tags").options == ["grid", "keeper"]
    saved = store().get_run(run_id)
    assert saved.tags == ("grid", "keeper") and saved.hypothesis == "a smaller lr should not matter"
    at.multiselect(key="cmp_f_tags").set_value(["keeper"]).run()
    assert table_names(at) == ["other"]
    # the app's own tags are refused in one line, and nothing changes
    at.multiselect(key=f"lc_tags:{run_id}").set_value(["study:mine"])
    click(at, "Save tags and hypothesis")
    assert len(at.error) == 1 and "set by the app" in at.error[0].value
    assert store().get_run(run_id).tags == ("grid", "keeper")


def test_a_group_tag_is_kept_and_not_offered(home, monkeypatch):
    s = store()
    s.update_run(home.ids["other"], tags=("curve:abc", "mine"))
    at = open_compare(start_app(home.path, monkeypatch))
    pick(at, home.ids["other"])
    box = at.multiselect(key=f"lc_tags:{home.ids['other']}")
    assert box.value == ["mine"] and "curve:abc" not in box.options
    box.set_value([])
    click(at, "Save tags and hypothesis")
    no_errors(at)
    assert s.get_run(home.ids["other"]).tags == ("curve:abc",)


def test_delete_shows_deleted_undo_and_undo_brings_it_back(home, monkeypatch):
    at = open_compare(start_app(home.path, monkeypatch))
    pick(at, home.ids["other"])
    at.multiselect(key="cmp_runs").set_value([home.ids["other"], home.ids["base"]]).run()
    click(at, "Delete")
    no_errors(at)
    assert sorted(table_names(at)) == ["base", "child"]
    assert at.multiselect(key="cmp_runs").value == [home.ids["base"]]  # off the chart, no warning about it
    assert not at.warning or all("other" not in w.value or "deleted, undo" in w.value for w in at.warning)
    notice = [w.value for w in at.warning if "deleted, undo" in w.value]
    assert len(notice) == 1 and "other" in notice[0] and "24 h" in notice[0]
    assert store().get_run(home.ids["other"]).deleted_at is not None
    click(at, "Undo")
    no_errors(at)
    assert sorted(table_names(at)) == ["base", "child", "other"]
    assert not [w for w in at.warning if "deleted, undo" in w.value]
    assert store().get_run(home.ids["other"]).deleted_at is None


def test_a_run_with_a_child_asks_first_naming_the_child(home, monkeypatch):
    at = open_compare(start_app(home.path, monkeypatch))
    pick(at, home.ids["base"])
    click(at, "Delete")
    no_errors(at)
    asked = [w.value for w in at.warning if "depends on it" in w.value]
    assert len(asked) == 1 and home.ids["child"] in asked[0] and "child" in asked[0] and "starts from it" in asked[0]
    assert "base" in table_names(at)  # nothing went yet
    click(at, "Keep it")
    assert not [w for w in at.warning if "depends on it" in w.value] and "base" in table_names(at)
    click(at, "Delete")
    click(at, "Delete anyway")
    no_errors(at)
    assert sorted(table_names(at)) == ["child", "other"]
    assert [w.value for w in at.warning if "deleted, undo" in w.value]


def test_a_running_run_is_not_deleted_and_says_why_in_one_line(home, monkeypatch):
    store().update_run(home.ids["other"], status="running")
    at = open_compare(start_app(home.path, monkeypatch))
    pick(at, home.ids["other"])
    click(at, "Delete")
    assert len(at.error) == 1 and "cancel them first" in at.error[0].value
    assert "other" in table_names(at) and store().get_run(home.ids["other"]).deleted_at is None


def test_archived_runs_are_hidden_until_shown(home, monkeypatch):
    at = open_compare(start_app(home.path, monkeypatch))
    pick(at, home.ids["other"])
    click(at, "Archive")
    no_errors(at)
    assert sorted(table_names(at)) == ["base", "child"]
    assert at.toggle(key="cmp_archived").label == "Show archived (1)"
    at.toggle(key="cmp_archived").set_value(True).run()
    no_errors(at)
    assert sorted(table_names(at)) == ["base", "child", "other"]
    pick(at, home.ids["other"])
    click(at, "Unarchive")
    at.toggle(key="cmp_archived").set_value(False).run()
    assert sorted(table_names(at)) == ["base", "child", "other"]
    assert not store().get_run(home.ids["other"]).archived


def test_a_viewer_sees_the_runs_and_no_edit_control(home, monkeypatch):
    at = signed_in(start_app(home.path, monkeypatch), "vic@example.org", None)
    assert sorted(table_names(at)) == ["base", "child", "other"]
    assert edit_controls(at) == [] and not [e for e in at.expander if e.label.startswith("Edit a run")]
    assert any("viewer" in c.value and "author or an admin" in c.value for c in at.caption)
    at.multiselect(key="cmp_runs").set_value([home.ids["other"]]).run()
    no_errors(at)
    assert not [b for b in at.button if b.label == "Add note"]  # a viewer comments on nothing either
    assert any("member role to add notes" in c.value for c in at.caption)


def test_a_member_changes_only_their_own_runs_and_an_admin_any(home, monkeypatch):
    at = signed_in(start_app(home.path, monkeypatch), "bob@example.org", "member")
    assert edit_controls(at) == []  # every run here is ann's
    at = signed_in(start_app(home.path, monkeypatch), ANN, "member")
    pick(at, home.ids["other"])
    assert f"lc_delete:run:{home.ids['other']}" in edit_controls(at)
    click(at, "Delete")
    no_errors(at)
    notice = [w.value for w in at.warning if "deleted, undo" in w.value]
    assert len(notice) == 1
    # bob, a member, neither sees ann's undo nor can change her runs; an admin sees it, by whom it went
    at = signed_in(start_app(home.path, monkeypatch), "bob@example.org", "member")
    assert not [w for w in at.warning if "deleted" in w.value] and "Undo" not in [b.label for b in at.button]
    at = signed_in(start_app(home.path, monkeypatch), "root@example.org", "admin")
    assert any(f"deleted by {markdown_literal(ANN)}, undo" in w.value for w in at.warning)
    click(at, "Undo")
    no_errors(at)
    assert "other" in table_names(at)
    assert store().get_run(home.ids["other"]).deleted_at is None


def test_notes_carry_the_signed_in_name(home, monkeypatch):
    at = signed_in(start_app(home.path, monkeypatch), ANN, "member")
    assert not at.sidebar.text_input  # nobody types a name in team mode
    at.multiselect(key="cmp_runs").set_value([home.ids["other"]]).run()
    at.text_area(key="cmp_note_text").input("seen")
    click(at, "Add note")
    no_errors(at)
    assert [c.author for c in store().comments([home.ids["other"]])] == [ANN]


# -- the Tune page: a study and a learning curve, archived, deleted and undone as one ------------------------------
def tune_groups(at):
    """On wine -> cultivar: a finished run, a learning curve of two runs from it, and a study of two trials."""
    import optuna

    from recipe_core.search import tuning
    from recipe_core.tracking.records import RunRecord, new_id

    s = store()
    wine = s.get_dataset("wine")
    src = new_id()

    def run(name, when, **fields):
        return s.add_run(RunRecord(id=new_id(), name=name, model="linear", config={"model": "linear"},
                                   dataset_id=wine.id, target="cultivar", author="ann", status="finished",
                                   source="app", metrics={"val_loss": 0.5}, created_at=f"2024-01-01T00:00:0{when}",
                                   **fields)).id
    curve = [run(f"curve-{i}", i, parent_id=src, tags=("curve:c1",), seed=i) for i in (1, 2)]
    trials = [run(f"trial-{i}", 2 + i, tags=("study:wine-s1",)) for i in (1, 2)]
    s.add_run(RunRecord(id=src, name="src", model="linear", config={"model": "linear"}, dataset_id=wine.id,
                        target="cultivar", author="ann", status="finished", source="app",
                        metrics={"val_loss": 0.5}, created_at="2024-01-01T00:00:09"))
    study = optuna.create_study(study_name="wine-s1", storage=tuning.optuna_storage(s.url))
    for key, value in (("dataset_id", wine.id), ("target", "cultivar"), ("n_trials", 2)):
        study.set_user_attr(key, value)
    at.run()
    no_errors(at)
    return curve, trials


def picked(at, key):
    """The value of the selectbox with this key, None when the page draws none."""
    return next((box.value for box in at.selectbox if box.key == key), None)


@pytest.fixture
def tune_at(tmp_path, monkeypatch):
    from app_session import open_tune

    return open_tune(tmp_path / "tune_home", monkeypatch)


def test_a_study_is_deleted_with_its_trials_and_undone(tune_at):
    at = tune_at
    _, trials = tune_groups(at)
    assert picked(at, "search_pick") == "wine-s1"
    at.button(key="lc_delete:study:wine-s1").click().run()
    asked = [w.value for w in at.warning if "depends on it" in w.value]
    assert len(asked) == 1 and "2 runs are its trials" in asked[0]
    at.button(key="lc_delete_anyway:study:wine-s1").click().run()
    no_errors(at)
    assert picked(at, "search_pick") is None
    assert any("No study on this dataset" in c.value for c in at.caption)
    assert [w.value for w in at.warning if "deleted, undo" in w.value and "wine\\-s1" in w.value]
    assert all(store().get_run(i).deleted_at is not None for i in trials)
    at.button(key="lc_undo:study:wine-s1").click().run()
    no_errors(at)
    assert picked(at, "search_pick") == "wine-s1"
    assert all(store().get_run(i).deleted_at is None for i in trials)


def test_a_learning_curve_is_archived_then_deleted_and_undone(tune_at):
    at = tune_at
    curve, _ = tune_groups(at)
    assert picked(at, "curve_pick") == "c1"
    at.button(key="lc_archive:curve:c1").click().run()
    no_errors(at)
    assert picked(at, "curve_pick") is None  # archived: hidden
    assert all(store().get_run(i).archived for i in curve)
    at.toggle(key="curve_archived").set_value(True).run()
    assert picked(at, "curve_pick") == "c1"
    at.button(key="lc_archive:curve:c1").click().run()  # now "Unarchive"
    at.toggle(key="curve_archived").set_value(False).run()
    assert picked(at, "curve_pick") == "c1"
    at.button(key="lc_delete:curve:c1").click().run()
    assert any("2 runs make up this curve" in w.value for w in at.warning)
    at.button(key="lc_delete_anyway:curve:c1").click().run()
    no_errors(at)
    assert picked(at, "curve_pick") is None
    assert [w.value for w in at.warning if "deleted, undo" in w.value and "c1" in w.value]
    at.button(key="lc_undo:curve:c1").click().run()
    no_errors(at)
    assert picked(at, "curve_pick") == "c1"
    assert all(store().get_run(i).deleted_at is None for i in curve)
