"""Every link the app builds to another page, followed in Chromium (issue 12, item 7).

st.page_link with query_params (Train, Tune) and the links inside tables and text (the top-loss LinkColumn, the
Label page's suspect labels) must land on the page they name, on the run or row they name: never on
"Page not found", never on an exception box. A LinkColumn and a markdown link open a new tab, a new session.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from walk_data import (
    CHROMIUM,
    CHROMIUM_ARGS,
    click_link_cell,
    main_text,
    on_screen_problem,
    streamlit_server,
    visible,
    wait_until,
    wait_visible,
)

from recipe_core.config import load_settings
from recipe_core.labelling import labels
from recipe_core.tracking.store import Store

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
RUN_S = 180
FAILED = re.compile(r"^Run (failed|lost|cancelled)\b")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    home = tmp_path_factory.mktemp("links_home")
    with streamlit_server(home, home / "streamlit.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_text("Target column").first.wait_for()  # the samples are registered on the first visit
        store = Store(f"sqlite:///{home / 'recipe.db'}")
        yield {"url": url, "home": home, "page": page, "store": store, "wine": store.get_dataset("wine"),
               "browser": browser}
        browser.close()


def landed(page, step: str, path: str, done, timeout: float = 60) -> None:
    """The page is at `path`, shows what `done()` looks for, and (after a moment for a late dialog) shows neither an
    exception box nor "Page not found"."""
    wait_until(page, step, lambda: re.match(rf"^https?://[^/]+/{path}(\?|$)", page.url) and done(), timeout,
               why=lambda: f"URL {page.url}; the page reads: {main_text(page)[-800:]}")
    page.wait_for_timeout(1500)  # "Page not found" is a dialog drawn after the page
    problem = on_screen_problem(page)
    assert problem is None, f"[{step}] {page.url}: {problem}"


def train_linear(app, heading_wait: bool = True):
    page, store, wine = app["page"], app["store"], app["wine"]
    page.goto(f"{app['url']}/train?dataset={wine.id}&target=cultivar")
    page.get_by_text("124 train · 27 validation · 27 test").wait_for()
    before = {r.id for r in store.list_runs(wine.id, "cultivar")}
    page.get_by_role("radio", name="linear", exact=True).click()
    page.get_by_role("button", name="Train", exact=True).click()
    run = wait_until(page, "train linear", lambda: next(
        (r for r in store.list_runs(wine.id, "cultivar") if r.id not in before and r.status == "finished"), None),
        RUN_S, FAILED)
    wait_visible(page, "train linear", page.get_by_role("heading", name=f"Run {run.name}"), 30, FAILED)
    wait_visible(page, "train linear", page.get_by_text(re.compile(r"^Validation metrics \(")), 30, FAILED)
    return run


def run_heading(page, run) -> bool:
    return visible(page.get_by_role("heading", name=f"Run {run.name}", exact=True))


def test_the_top_loss_link_opens_its_row_on_the_data_page(app):
    run = train_linear(app)
    page, wine = app["page"], app["wine"]
    name = page.get_by_role("textbox", name="Your name")
    name.fill("kim")
    name.press("Enter")
    wait_until(page, "type a name", lambda: "author=kim" in page.url, 20, why=lambda: page.url)
    page.get_by_role("tab", name="Top-loss examples").click()
    frame = page.locator('[role="tabpanel"]:visible').get_by_test_id("stDataFrame").first
    frame.wait_for()
    first_row = app["store"].get_json(run.id, "top_losses")[0]["row"]
    opened = click_link_cell(page, frame, row=0)
    try:
        landed(opened, "top-loss link", "", lambda: visible(opened.get_by_role(
            "heading", name=f"Row {int(first_row):,}", exact=True)))
        assert f"dataset={wine.id}" in opened.url and "target=cultivar" in opened.url, opened.url
        assert opened.get_by_role("combobox", name="Dataset").input_value() == "wine"
        assert opened.get_by_role("combobox", name="Target column").input_value() == "cultivar"
        assert opened.get_by_role("textbox", name="Your name").input_value() == "kim"  # a new tab keeps the name
    finally:
        opened.close()


def test_the_train_page_links_to_compare_and_tune(app):
    page = app["page"]
    run = train_linear(app)
    page.get_by_role("link", name="Its curves on Compare").click()
    landed(page, "Its curves on Compare", "compare", lambda: run.id in page.url and visible(
        page.get_by_text(re.compile(r"of [\d,]+ points shown"))))
    assert page.get_by_role("combobox", name="Runs on the chart").count()

    page.get_by_test_id("stSidebarNav").get_by_text("Train", exact=True).click()
    link = page.get_by_role("link", name=re.compile(r"^Compare the curves of the \d+ best finished runs"))
    link.wait_for()
    link.click()
    landed(page, "Compare the curves of the best runs", "compare",
           lambda: run.id in page.url and visible(page.get_by_text(re.compile(r"of [\d,]+ points shown"))))

    page.get_by_test_id("stSidebarNav").get_by_text("Train", exact=True).click()
    wait_visible(page, "back to Train", page.get_by_role("heading", name=f"Run {run.name}"))
    page.get_by_role("link", name="New run from this one (change one thing)").click()
    landed(page, "New run from this one", "tune", lambda: f"run={run.id}" in page.url and visible(
        page.get_by_role("heading", name="Tune", exact=True)))
    chosen = page.get_by_role("combobox", name="From run").input_value()
    assert chosen.startswith(run.name), f"the Tune page starts from {chosen!r}, not {run.name}"


def test_the_tune_page_links_to_the_new_run_and_to_compare(app):
    page, store, wine = app["page"], app["store"], app["wine"]
    parent = train_linear(app)
    page.get_by_role("link", name="New run from this one (change one thing)").click()
    page.get_by_role("heading", name="Tune", exact=True).wait_for()
    strength = page.get_by_label("L2 strength", exact=True)
    strength.fill(f"{float(parent.config.get('l2') or 1.0) * 10:g}")
    strength.press("Tab")
    hypothesis = page.get_by_role("textbox", name="Hypothesis (what should this change do?)")
    hypothesis.fill("more L2 should not hurt on 124 rows")
    hypothesis.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Start this run").click()
    child = wait_until(page, "start a child run", lambda: next(
        (r for r in store.list_runs(wine.id, "cultivar") if r.parent_id == parent.id), None), 30)
    wait_until(page, "the child run ends", lambda: store.get_run(child.id).status == "finished", RUN_S, FAILED)

    page.get_by_role("link", name="Compare it with its parent").click()
    landed(page, "Compare it with its parent", "compare",
           lambda: parent.id in page.url and child.id in page.url and visible(page.get_by_text(
               re.compile(r"of [\d,]+ points shown"))))
    page.get_by_test_id("stSidebarNav").get_by_text("Tune", exact=True).click()
    page.get_by_role("link", name="Watch it train").click()
    landed(page, "Watch it train", "train", lambda: run_heading(page, child), timeout=30)

    # An ensemble of the two, then its link to Compare.
    page.get_by_test_id("stSidebarNav").get_by_text("Tune", exact=True).click()
    page.get_by_role("tab", name="Ensembles").click()
    page.get_by_role("button", name="Ensemble the top 3 by val_loss").click()
    link = page.get_by_role("link", name="Compare it with its members")
    wait_visible(page, "ensemble", link, 120)
    made = wait_until(page, "ensemble", lambda: next(
        (r for r in store.list_runs(wine.id, "cultivar") if r.model == "ensemble"), None), 10)
    link.click()
    landed(page, "Compare it with its members", "compare",
           lambda: made.id in page.url and visible(page.get_by_text(re.compile(r"of [\d,]+ points shown"))))


def test_a_suspect_label_links_to_its_row_on_the_data_page(app):
    page, store, wine = app["page"], app["store"], app["wine"]
    settings = load_settings({"RECIPE_HOME": str(app["home"])})
    base = labels.baseline(settings, store, wine, "cultivar")
    suspect = base.items[0]
    wrong = next(c for c in base.classes if c != base.truth[suspect])
    for who in ("ann", "bob"):  # two people agree with each other, not with the dataset, on the first item
        for item in base.items:
            labels.add(store, base, who, item, wrong if item == suspect else base.truth[item],
                       event_id=f"{who}:{item}")
    page.goto(f"{app['url']}/label?dataset={wine.id}&target=cultivar")
    name = page.get_by_role("textbox", name="Your name")
    name.fill("ann")
    name.press("Enter")
    link = page.get_by_role("link", name=f"row {suspect}", exact=True)
    wait_visible(page, "suspect labels", link, 60)
    try:
        with page.context.expect_page(timeout=5_000) as new_tab:
            link.click()
        opened = new_tab.value
    except Exception:  # the link opened in the same tab
        opened = page
    landed(opened, "suspect label link", "", lambda: visible(opened.get_by_role(
        "heading", name=f"Row {int(suspect):,}", exact=True)))
    assert f"dataset={wine.id}" in opened.url, opened.url
    if opened is not page:
        opened.close()
