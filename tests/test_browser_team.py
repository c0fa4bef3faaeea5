"""Issue 14, "Done when", in Chromium on a team server: people signed in through a local OpenID provider, with the
roles an operator gave them through the CLI.

- a viewer cannot start a run or label (the controls are absent, and the page says why in one line);
- a member's private dataset is invisible to another member: in the sidebar's picker on every page, and through a
  shared URL naming it (one line saying so, nothing of it);
- an admin deletes a run on Compare, undoes it, deletes it again and purges it on the Team page: its rows and its
  files are gone from the store and RECIPE_HOME.

One provider, one server and one browser context per person for the module; each person signs in once.
"""
from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
from oidc import (
    DATA_WIDGETS,
    cli_json,
    new_page,
    oidc_provider,
    page_paths,
    recipe_cli,
    settled,
    shown,
    sidebar_text,
    sign_in,
    team_server,
    wait_sidebar,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright
from walk_data import CHROMIUM, CHROMIUM_ARGS, main_text

from recipe_core.tracking.store import Store

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

ADMIN, ANN, BEN, VIC = "admin@example.com", "ann@example.com", "ben@example.com", "vic@example.com"
ROLES = {ADMIN: "admin", ANN: "member", BEN: "member", VIC: "viewer"}
PRIVATE_NAME, PRIVATE_COLUMN, PRIVATE_FILE = "ann-private-survey", "secret_answer_qv", "ann_survey_zq.csv"
HIDDEN = "You may not see this dataset, or it does not exist."
RUN_S = 180


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    root = tmp_path_factory.mktemp("team")
    home = root / "home"
    home.mkdir()
    for email, role in ROLES.items():  # the operator, before anyone signs in
        recipe_cli(home, "users", "add", email, "--role", role)
    upload = root / PRIVATE_FILE
    pd.DataFrame({PRIVATE_COLUMN: ["yes", "no", "maybe"] * 30, "score": range(90)}).to_csv(upload, index=False)
    with oidc_provider(root / "provider.log") as provider, team_server(home, provider) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = {}
        for email in ROLES:
            pages[email] = new_page(browser)
            sign_in(pages[email], url, email.split("@")[0] + "-sub", email)
        store = Store(f"sqlite:///{home / 'recipe.db'}")
        wine = store.get_dataset("wine")  # a sample, registered on the first visit: shared with everyone
        yield {"url": url, "home": home, "pages": pages, "store": store, "wine": wine, "upload": upload}
        browser.close()


def open_page(page, url: str) -> None:
    page.goto(url)
    settled(page)


def main_says(page, text: str) -> bool:
    return text in shown(main_text(page))


def picker_options(page) -> list[str]:
    """The sidebar's dataset picker, opened as a person opens it: the names it offers ([] when it is absent)."""
    box = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Dataset")
    if not box.count():
        return []
    box.click()
    options = page.get_by_role("option")
    options.first.wait_for()
    names = [shown(t).strip() for t in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return names


def test_every_person_is_signed_in_with_the_role_the_operator_gave(team):
    for email, page in team["pages"].items():
        assert f"Signed in as {email} · {ROLES[email]}" in sidebar_text(page), sidebar_text(page)
    users = {u["name"]: u["role"] for u in cli_json(team["home"], "users", "list")}
    assert users == ROLES


def test_a_viewer_cannot_start_a_run_or_label(team):
    vic, ann = team["pages"][VIC], team["pages"][ANN]
    wine = team["wine"].id
    train = f"{team['url']}/train?dataset={wine}&target=cultivar"
    label = f"{team['url']}/label?dataset={wine}&target=cultivar"
    main = vic.get_by_test_id("stMain")

    open_page(vic, train)
    assert main_says(vic, "You are a viewer: ask an admin for the member role to start runs."), main_text(vic)
    assert main.get_by_role("button", name="Train", exact=True).count() == 0
    open_page(vic, label)
    assert main_says(vic, "You are a viewer: ask an admin for the member role to label"), main_text(vic)
    assert main.get_by_role("button", name=re.compile(r"^Skip")).count() == 0  # a skip is a label too
    open_page(vic, f"{team['url']}/?dataset={wine}")
    assert main_says(vic, "You are a viewer: ask an admin for the member role to upload datasets."), main_text(vic)
    assert vic.get_by_test_id("stFileUploader").count() == 0

    # A member on the same pages gets the controls: the checks above can fail.
    open_page(ann, train)
    assert ann.get_by_test_id("stMain").get_by_role("button", name="Train", exact=True).count() == 1
    assert not main_says(ann, "You are a")
    open_page(ann, label)
    assert ann.get_by_test_id("stMain").get_by_role("button", name=re.compile(r"^Skip")).count() == 1


def test_a_members_private_dataset_is_invisible_to_another_member(team):
    ann, ben, admin = team["pages"][ANN], team["pages"][BEN], team["pages"][ADMIN]
    open_page(ann, team["url"])
    if not ann.get_by_test_id("stFileUploaderDropzone").is_visible():  # the expander is closed once data exists
        ann.get_by_text("Add a dataset").first.click()
    ann.locator("input[type=file]").set_input_files(str(team["upload"]))
    ann.get_by_label("Name (optional)").fill(PRIVATE_NAME)
    ann.get_by_text("private to its owner", exact=True).click()
    ann.get_by_role("button", name="Add dataset").click()
    ann.get_by_text(re.compile(r"^Added '")).first.wait_for(timeout=60_000)
    record = next(r for r in team["store"].list_datasets() if r.name == PRIVATE_NAME)
    assert (record.owner, record.visibility) == (ANN, "private")
    assert PRIVATE_NAME in picker_options(ann)

    for path in page_paths():
        open_page(ben, f"{team['url']}/{path}")
        offered = picker_options(ben)
        assert "wine" in offered and PRIVATE_NAME not in offered, (path, offered)
        # A shared URL naming it: one line, nothing of it.
        open_page(ben, f"{team['url']}/{path}?dataset={record.id}")
        assert main_says(ben, HIDDEN), (path, main_text(ben))
        html = ben.content()
        for secret in (PRIVATE_NAME, PRIVATE_COLUMN, PRIVATE_FILE):
            assert secret not in html, (path, secret)
        assert ben.locator(DATA_WIDGETS).count() == 0, (path, main_text(ben))
    # Its owner and an admin open the same link.
    for page in (ann, admin):
        open_page(page, f"{team['url']}/compare?dataset={record.id}")
        assert not main_says(page, HIDDEN)
        wait_sidebar(page, f"id {record.id}")
    assert PRIVATE_NAME in picker_options(admin)
    # The CLI's view of Ben agrees.
    assert record.id not in [d["id"] for d in cli_json(team["home"], "datasets", "--as", BEN)]


def _rows_of(home: Path, run_id: str) -> dict[str, int]:
    with sqlite3.connect(home / "recipe.db") as db:
        return {table: db.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0]
                for table in ("metric_chunks", "artifacts")}


def _files_of(home: Path, run_id: str) -> list[Path]:
    return sorted((home / "jobs").glob(f"*{run_id}*"))


def _wait_run(store: Store, run_id: str, timeout: float = RUN_S):
    deadline = time.time() + timeout
    while (run := store.get_run(run_id)).status not in ("finished", "failed", "cancelled", "lost"):
        assert time.time() < deadline, f"run {run_id} still {run.status} after {timeout:.0f} s"
        time.sleep(1)
    return run


def _pick_run(page, run_id: str) -> None:
    main = page.get_by_test_id("stMain")
    expander = main.get_by_text("Edit a run: rename, tags and hypothesis, archive, delete")
    box = main.get_by_role("combobox", name="Run", exact=True)
    if not box.is_visible():  # the expander is closed
        expander.click()
    box.wait_for()
    option = page.get_by_role("option", name=re.compile(re.escape(run_id[:6])))
    for _ in range(5):  # a click during the expander's rerun is dropped: click again until the list opens
        box.click()
        try:
            option.first.wait_for(timeout=3000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    option.first.click()
    page.wait_for_timeout(500)


def test_an_admin_deletes_undoes_deletes_again_and_purges_a_run(team):
    admin, store, home = team["pages"][ADMIN], team["store"], team["home"]
    wine = team["wine"].id
    before = {r.id for r in store.list_runs(wine, "cultivar")}
    open_page(admin, f"{team['url']}/train?dataset={wine}&target=cultivar")
    admin.get_by_test_id("stMain").get_by_role("button", name="Train", exact=True).click()  # the prior: quick
    deadline = time.time() + 60
    while not (new := [r for r in store.list_runs(wine, "cultivar") if r.id not in before]):
        assert time.time() < deadline, "pressing Train started no run"
        time.sleep(0.5)
    run = _wait_run(store, new[0].id)
    assert (run.status, run.author) == ("finished", ADMIN), (run.status, run.reason)
    rows = _rows_of(home, run.id)
    assert rows["metric_chunks"] > 0 and rows["artifacts"] > 0, rows
    files = _files_of(home, run.id)
    assert any(f.name == f"run-{run.id}.log" for f in files), files

    compare = f"{team['url']}/compare?dataset={wine}&target=cultivar"
    main = admin.get_by_test_id("stMain")
    open_page(admin, compare)
    _pick_run(admin, run.id)
    main.get_by_role("button", name="Delete", exact=True).click()
    main.get_by_text(re.compile(rf"^Run {re.escape(run.name)} deleted")).first.wait_for()
    assert store.get_run(run.id).deleted_at is not None
    assert run.id not in {r.id for r in store.list_runs(wine, "cultivar")}

    main.get_by_role("button", name="Undo").first.click()
    main.get_by_text(re.compile(rf"^Run {re.escape(run.name)} is back")).first.wait_for()
    assert store.get_run(run.id).deleted_at is None

    open_page(admin, compare)
    _pick_run(admin, run.id)
    main.get_by_role("button", name="Delete", exact=True).click()
    main.get_by_text(re.compile(rf"^Run {re.escape(run.name)} deleted")).first.wait_for()
    assert _rows_of(home, run.id) == rows  # a delete is soft: nothing is freed until the purge

    open_page(admin, f"{team['url']}/team")
    main.get_by_text("Everything in the trash, also what could still be undone").click()
    main.get_by_role("button", name="Purge everything in the trash").click()
    main.get_by_text(re.compile(r"^Purged ")).first.wait_for()
    assert _rows_of(home, run.id) == {"metric_chunks": 0, "artifacts": 0}
    assert _files_of(home, run.id) == []
    assert run.id not in {r["id"] for r in cli_json(home, "runs", "--dataset", wine)}

    # Who did it is on the record: each step once, by the admin, under the run's id.
    done = [e["action"] for e in cli_json(home, "audit", "--actor", ADMIN) if e["key"] == run.id]
    assert sorted(done) == ["delete", "delete", "purge", "undo"], done
