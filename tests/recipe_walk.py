"""The real-browser walk of the whole recipe on one dataset (tests/test_browser_walk.py and
test_browser_walk_excel.py): every step a person takes, and what each must show and must never show."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from walk_data import (
    DATASETS,
    WalkFailure,
    click_link_cell,
    click_row_marker,
    main_text,
    on_screen_problem,
    visible,
    wait_until,
    wait_visible,
)

from recipe_core.tracking.store import Store

ME = "walker"
N_LABELS = 10
RUN_S = 180  # one training job, from its button to its results on the page
START_S = 90  # a background job (search, learning curve) shows its first trial or run within this
CURVE_S = 300  # the learning curve: 12 runs, two at a time, from its button
SEARCH_S = 300  # 4 trials of the default space, two at a time, from its button
ENDED = ("finished", "failed", "cancelled", "lost")
FAILED_TEXT = re.compile(r"^Run (failed|lost|cancelled)\b")


class Walk:
    """One person's walk; every step checks the page for exception boxes and "Page not found"."""

    def __init__(self, browser, url: str, home: Path, data, shots: Path):
        self.url, self.home, self.data, self.shots = url, home, data, shots
        self.store = Store(f"sqlite:///{home / 'recipe.db'}")
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.n_shot = 0
        self.record = None
        self.runs: dict[str, object] = {}  # step name -> run record

    def shot(self, name: str, page=None) -> None:
        self.n_shot += 1
        if os.environ.get("RECIPE_WALK_SHOTS"):
            folder = Path(os.environ["RECIPE_WALK_SHOTS"])
            folder.mkdir(parents=True, exist_ok=True)
            (page or self.page).screenshot(path=str(folder / f"{self.data.id}-{self.n_shot:02d}-{name}.png"),
                                           full_page=True)

    def check(self, step: str, page=None) -> None:
        problem = on_screen_problem(page or self.page)
        if problem:
            raise WalkFailure(f"[{step}] {problem}")

    def nav(self, title: str) -> None:
        self.page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        wait_visible(self.page, f"open {title}", self.page.get_by_role("heading", name=title, exact=True).first)

    def pick(self, label: str, option: str | re.Pattern, step: str) -> None:
        self.page.get_by_role("combobox", name=label).first.click()
        self.page.get_by_role("option", name=option).first.click()
        self.page.wait_for_timeout(300)
        self.check(step)

    def fill_number(self, label: str, value: str) -> None:
        box = self.page.get_by_label(label, exact=True).first
        box.fill(value)
        box.press("Tab")  # commit, never Enter (item 8: Enter in a form submits it)
        self.page.wait_for_timeout(400)

    def run_ids(self) -> set[str]:
        return {r.id for r in self.store.list_runs(self.record.id, self.data.target)}

    def wait_for_new_run(self, step: str, before: set[str], timeout: float = 30):
        def new_run():
            fresh = self.run_ids() - before
            return self.store.get_run(sorted(fresh)[0]) if fresh else None
        return wait_until(self.page, step, new_run, timeout, FAILED_TEXT,
                          why=lambda: "No run was created. The page reads: " + main_text(self.page)[-1200:])

    def wait_run_ends(self, step: str, run_id: str, timeout: float = RUN_S):
        run = wait_until(self.page, step, lambda: (r := self.store.get_run(run_id)).status in ENDED and r, timeout,
                         FAILED_TEXT, why=lambda: f"Run {run_id} is still {self.store.get_run(run_id).status}. "
                                                  "The page reads: " + main_text(self.page)[-800:])
        if run.status != "finished":
            raise WalkFailure(f"[{step}] run {run.name} {run.status}: {run.reason}. "
                              f"The page reads: {main_text(self.page)[-800:]}")
        return run

    # -- the steps ------------------------------------------------------------------------------------------------
    def upload(self, path: Path) -> None:
        pg = self.page
        pg.goto(self.url)
        wait_visible(pg, "open the app", pg.get_by_text("Add a dataset").first)
        dropzone = pg.get_by_test_id("stFileUploaderDropzone")
        if not dropzone.is_visible():  # the expander starts closed once datasets exist
            pg.get_by_text("Add a dataset").first.click()
        pg.locator("input[type=file]").set_input_files(str(path))
        wait_visible(pg, "upload", pg.get_by_text(path.name).first)
        pg.get_by_role("button", name="Add dataset").click()
        wait_visible(pg, "add the dataset", pg.get_by_text(re.compile(r"^Added '")).first, timeout=60)
        self.record = next(r for r in self.store.list_datasets() if r.source_name == path.name)
        self.check("upload")
        self.shot("uploaded")

    def pick_target(self) -> None:
        self.pick("Target column", re.compile(f"^{re.escape(self.data.target)}$"), "pick the target")
        wait_until(self.page, "pick the target", lambda: f"target={self.data.target}" in self.page.url, 20)

    def profile(self) -> None:
        pg = self.page
        wait_visible(pg, "profile", pg.get_by_role("heading", name="Every column"), timeout=60)
        wait_visible(pg, "profile", pg.get_by_role("heading", name="Data-quality checks"))
        self.check("profile")
        self.shot("profile")

    def filter_and_open_row(self) -> None:
        pg = self.page
        pg.get_by_role("radio", name="Rows", exact=True).click()
        wait_visible(pg, "rows", pg.get_by_text(re.compile(r"^[\d,]+ matching rows")).first)
        column, op, value = self.data.filter
        self.pick("Filter column", re.compile(f"^{re.escape(column)}$"), "filter")
        self.pick("Operator", re.compile(f"^{re.escape(op)}$"), "filter")
        pg.get_by_label("Value", exact=True).fill(value)
        pg.get_by_role("button", name="Add filter").click()
        chip = pg.get_by_role("button", name=re.compile(re.escape(column) + r" \S+ '?" + re.escape(value) + r"\b"))
        wait_visible(pg, "filter", chip)
        wait_visible(pg, "filter", pg.get_by_text(re.compile(r"^[\d,]+ matching rows")).first)
        self.shot("filtered")
        click_row_marker(pg, pg.get_by_test_id("stMain").get_by_test_id("stDataFrame").first, row=0)
        wait_visible(pg, "open a row", pg.get_by_role("heading", name=re.compile(r"^Row [\d,]+$")))
        self.check("open a row")
        self.shot("row")

    def label(self) -> None:
        pg = self.page
        self.nav("Label")
        name = pg.get_by_role("textbox", name="Your name")
        name.fill(ME)
        name.press("Enter")
        progress = lambda n: pg.get_by_text(re.compile(rf"^{n} / \d+ labelled by {ME}$"))
        wait_visible(pg, "label: start", progress(0), timeout=60)
        self.shot("label")
        for n in range(1, N_LABELS + 1):
            step = f"label item {n}"
            wait_visible(pg, step, pg.get_by_role("heading", name=re.compile(rf"^Item {n} of \d+")))
            if self.data.task == "classification":
                wait_visible(pg, step, pg.get_by_role("button", name="Next →"))
                pg.get_by_text(re.compile(rf"labelled by {ME}$")).first.click()  # focus the page, not a text box
                pg.keyboard.press(str(n % 3))
            else:
                box = pg.get_by_label(re.compile(r"\(Enter saves\)$"))  # the target's name, then the hint
                box.fill(str(500 + 10 * n))
                box.press("Enter")
            wait_visible(pg, step, progress(n), timeout=30)
        events = [e for e in self.store.label_events(self.record.id, self.data.target) if e.annotator == ME]
        assert len(events) == N_LABELS, f"[label] the store has {len(events)} labels by {ME}, not {N_LABELS}"
        self.check("label")
        self.shot("labelled")

    def start_training(self, model: str, seed: int = 0) -> object:
        """Pick the model (and a seed), leave every other setting at its default, press Train."""
        pg = self.page
        step = f"train {model} seed {seed}"
        pg.get_by_role("radio", name=model, exact=True).click()
        self.fill_number("Seed", str(seed))
        before = self.run_ids()
        pg.get_by_role("button", name="Train", exact=True).click()
        run = self.wait_for_new_run(step, before)
        assert (run.model, run.seed) == (model, seed), f"[{step}] started {run.model} seed {run.seed}"
        wait_visible(pg, step, pg.get_by_role("heading", name=f"Run {run.name}"), timeout=30, bad=FAILED_TEXT)
        return run

    def train_all(self, wanted: list[tuple[str, int]]) -> dict:
        """Start every run, as a person does who does not wait for the prior to finish, then wait for them all."""
        started = {(m, s): self.start_training(m, s) for m, s in wanted}
        ended = {key: self.wait_run_ends(f"train {key[0]} seed {key[1]}", run.id) for key, run in started.items()}
        last = ended[wanted[-1]]
        step = f"results of {last.name}"
        wait_visible(self.page, step, self.page.get_by_text(re.compile(r"^Validation metrics \(")), 30,
                     bad=FAILED_TEXT)
        board = self.page.get_by_test_id("stMain").get_by_test_id("stDataFrame").nth(1)  # after the split summary
        wait_until(self.page, "leaderboard",
                   lambda: all(r.name in (board.text_content() or "") for r in ended.values()), 30,
                   why=lambda: "the leaderboard reads: " + (board.text_content() or "")[:800])
        self.check(step)
        self.shot("trained")
        return ended

    def back_to_run(self, run) -> None:
        self.nav("Train")
        wait_visible(self.page, "back to Train", self.page.get_by_role("heading", name=f"Run {run.name}"), 30)

    def open_train(self) -> None:
        self.nav("Train")
        wait_visible(self.page, "split", self.page.get_by_text(re.compile(r"[\d,]+ train · [\d,]+ validation")), 60)

    def open_top_loss_row(self) -> None:
        pg = self.page
        step = "open a top-loss row"
        pg.get_by_role("tab", name="Top-loss examples").click()
        panel = pg.locator('[role="tabpanel"]:visible')
        frame = panel.get_by_test_id("stDataFrame").first
        wait_visible(pg, step, frame)
        pg.wait_for_timeout(500)
        self.shot("top-losses")
        opened = click_link_cell(pg, frame, row=0)
        try:
            wait_until(opened, step, lambda: visible(opened.get_by_role("heading", name=re.compile(r"^Row [\d,]+$"))),
                       60, why=lambda: f"URL {opened.url}; the page reads: {main_text(opened)[-800:]}")
            opened.wait_for_timeout(1000)  # "Page not found" is a dialog that comes after the page
            self.check(step, opened)
            assert f"dataset={self.record.id}" in opened.url, f"[{step}] opened {opened.url}"
            self.shot("top-loss-row", opened)
        finally:
            opened.close()

    def compare_seeds(self, a, b, browser) -> None:
        pg = self.page
        step = "compare two seeds"
        self.nav("Compare")
        if pg.get_by_role("button", name="Clear chart").is_enabled():
            pg.get_by_role("button", name="Clear chart").click()
            pg.wait_for_timeout(500)
        for run in (a, b):
            picker = pg.get_by_role("combobox", name="Runs on the chart")
            picker.click()
            picker.press_sequentially(run.id[:6])  # the list is long once other runs exist: type to find it
            pg.get_by_role("option", name=re.compile(re.escape(run.id[:6]) + "$")).first.click()
            pg.keyboard.press("Escape")
            pg.wait_for_timeout(400)
        pg.get_by_text("Group seeds", exact=True).click()
        wait_until(pg, step, lambda: "group_seeds=1" in pg.url and a.id in pg.url and b.id in pg.url, 20,
                   why=lambda: f"the URL is {pg.url}")
        self.check(step)
        shared = pg.url
        fresh = browser.new_context(viewport={"width": 1400, "height": 1000})  # a teammate who got the link
        try:
            other = fresh.new_page()
            other.set_default_timeout(60_000)
            other.goto(shared)
            wait_visible(other, step + " (fresh context)", other.get_by_text(re.compile(r"\(2 seeds\)")).first, 60)
            self.check(step + " (fresh context)", other)
            self.shot("compare-shared", other)
        finally:
            fresh.close()

    def new_run_from_parent(self, parent) -> object:
        pg = self.page
        step = "new run from a parent"
        pg.get_by_role("link", name="New run from this one (change one thing)").click()
        wait_visible(pg, step, pg.get_by_role("heading", name="Tune", exact=True))
        wait_until(pg, step, lambda: f"run={parent.id}" in pg.url, 20, why=lambda: f"the URL is {pg.url}")
        self.fill_number("Dropout", "0.10")
        hypothesis = pg.get_by_role("textbox", name="Hypothesis (what should this change do?)")
        hypothesis.fill("dropout 0.1 should close the train/val gap")
        hypothesis.press("Enter")
        pg.wait_for_timeout(500)
        self.shot("tune-new")
        before = self.run_ids()
        pg.get_by_role("button", name="Start this run").click()
        child = self.wait_for_new_run(step, before)
        assert child.parent_id == parent.id, f"[{step}] the new run's parent is {child.parent_id}"
        assert child.config.get("dropout") == 0.1, f"[{step}] the new run's dropout is {child.config.get('dropout')}"
        wait_visible(pg, step, pg.get_by_text(re.compile(r"^Started ")))
        return child

    def watch_the_child(self, child) -> object:
        """Back on the Tune page's first tab, once the run has ended: its link to the Train page."""
        pg = self.page
        step = "new run from a parent"
        child = self.wait_run_ends(step, child.id)
        pg.get_by_role("tab", name="New run from this one").click()
        pg.get_by_role("link", name="Watch it train").click()
        shown = lambda: [h for h in pg.get_by_role("heading", name=re.compile(r"^Run ")).all_inner_texts()]
        wait_until(pg, step + ": the link 'Watch it train'", lambda: f"Run {child.name}" in shown(), 30,
                   FAILED_TEXT, why=lambda: f"the Train page shows {shown()} (URL {pg.url})")
        self.check(step)
        self.shot("tune-child-on-train")
        return child

    def start_learning_curve(self, source) -> set[str]:
        pg = self.page
        step = "learning curve"
        self.nav("Tune")
        pg.get_by_role("tab", name="More data?").click()
        self.pick("Config of run", re.compile("^" + re.escape(source.name) + " · "), step)
        before = self.run_ids()
        pg.get_by_role("button", name="Train the learning curve").click()
        started = re.compile(r"^Learning curve started|^Starting the learning curve|runs queued or training|"
                             r"runs ended$")
        wait_visible(pg, step + ": start", pg.get_by_text(started), 20)
        self.check(step)
        self.curve_started, self.curve_source = time.time(), source
        return before

    def wait_learning_curve(self, before: set[str]) -> None:
        pg = self.page
        step = "learning curve"
        pg.get_by_role("tab", name="More data?").click()
        ended = re.compile(r"^(\d+) of (\d+) runs ended$")

        def all_ended():
            picked = pg.get_by_role("combobox", name="Config of run").input_value()
            if not picked.startswith(self.curve_source.name + " · "):  # the tab must keep showing the curve started
                raise WalkFailure(f"[{step}] 'Config of run' switched by itself from {self.curve_source.name} to "
                                  f"{picked!r}; the tab reads: {main_text(pg)[-300:]}")
            hit = pg.get_by_text(ended)
            if not hit.count():
                return False
            done, total = map(int, ended.match(hit.first.inner_text().strip()).groups())
            return done == total and len(curve_runs()) >= total and total

        curve_runs = lambda: [r for r in self.store.list_runs(self.record.id, self.data.target)
                              if r.id not in before and r.parent_id == self.curve_source.id]
        wait_until(pg, step + ": its first run", lambda: curve_runs(), START_S - (time.time() - self.curve_started),
                   why=lambda: "no run of the curve is in the store. The tab reads: " + main_text(pg)[-800:])
        total = wait_until(pg, step, all_ended, CURVE_S - (time.time() - self.curve_started), why=lambda: (
            f"{len(curve_runs())} new runs in the store: {sorted(r.status for r in curve_runs())}. "
            "The tab reads: " + main_text(pg)[-800:]))
        assert total == 12, f"[{step}] {total} runs, not 4 shares x 3 seeds"
        self.check(step)
        self.shot("learning-curve")

    def start_random_search(self) -> None:
        pg = self.page
        pg.get_by_role("tab", name="Random search").click()
        self.fill_number("Trials", "4")
        pg.get_by_role("button", name="Start the search").click()
        wait_visible(pg, "random search: start",
                     pg.get_by_text(re.compile(r"^Study .* started|^Starting the study|trials ended")), 20)
        self.check("random search")
        self.search_started = time.time()

    def wait_random_search(self) -> None:
        pg = self.page
        step = "random search"
        pg.get_by_role("tab", name="Random search").click()
        wait_until(pg, step + ": the study starts", lambda: not visible(pg.get_by_text("Starting the study…")) and
                   visible(pg.get_by_text(re.compile(r"trials ended"))), START_S - (time.time() - self.search_started),
                   why=lambda: "The tab reads: " + main_text(pg)[-600:])
        wait_until(pg, step, lambda: visible(pg.get_by_text(re.compile(r"^4 of 4 trials ended"))),
                   SEARCH_S - (time.time() - self.search_started),
                   why=lambda: "The tab reads: " + main_text(pg)[-1000:])
        self.check(step)
        self.shot("search")

    def ensemble(self) -> None:
        pg = self.page
        step = "ensemble of the top 3"
        pg.get_by_role("tab", name="Ensembles").click()
        pg.get_by_role("button", name="Ensemble the top 3 by val_loss").click()
        wait_visible(pg, step, pg.get_by_text("Ensemble val_loss", exact=True), timeout=120)
        self.check(step)
        self.shot("ensemble")
        made = [r for r in self.store.list_runs(self.record.id, self.data.target) if r.model == "ensemble"][-1]
        members = [self.store.get_run(i) for i in made.config.get("members", [])]
        assert len(members) == 3, f"[{step}] {len(members)} members"
        table = pg.locator('[role="tabpanel"]:visible').get_by_test_id("stDataFrame").first  # metric, value, interval
        cells = wait_until(pg, step, lambda: [c.strip() for c in table.locator("td").all_text_contents()], 30,
                           why=lambda: "the ensemble's metrics table has no cells")  # drawn after the metrics
        interval = cells[cells.index("val_loss") + 2] if "val_loss" in cells else None
        assert interval, f"[{step}] no val_loss row in the ensemble's metrics table: {cells[:12]}"
        assert float(interval.split(" – ")[0]) >= 0, f"[{step}] the 95% interval of val_loss (log loss) is {interval}"
        partial = [m.name for m in members if any(t.startswith("curve:") for t in m.tags)]
        assert not partial, (f"[{step}] members trained on part of the training split (learning-curve runs): "
                             f"{partial}")


def walk_the_whole_recipe(server, browser, tmp_path, name: str) -> None:
    """The walk on one of walk_data.DATASETS: iris in test_browser_walk.py, carshare in test_browser_walk_excel.py."""
    url, home = server
    data, make = DATASETS[name]
    walk = Walk(browser, url, home, data, tmp_path)
    failures: list[str] = []
    started = time.time()
    timings = []

    def step(title: str, fn, *args, needed: bool = False):
        """Run one step; a failure is recorded (with a screenshot) and the walk goes on unless later steps need it."""
        t0 = time.time()
        try:
            return fn(*args)
        except Exception as e:  # WalkFailure, a failed assertion, a Playwright timeout
            failures.append(f"{title}: {type(e).__name__}: {str(e)[:1500]}")
            folder = Path(os.environ.get("RECIPE_WALK_SHOTS") or tmp_path)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                walk.page.screenshot(path=str(folder / f"{name}-failed-{len(failures)}.png"))
            except Exception:
                pass
            if needed:
                raise WalkFailure("\n".join(failures)) from e
            return None
        finally:
            timings.append(f"{title} {time.time() - t0:.0f}s")

    try:
        step("upload", walk.upload, make(tmp_path), needed=True)
        step("pick the target", walk.pick_target, needed=True)
        step("profile", walk.profile)
        step("filter and open a row", walk.filter_and_open_row)
        step("label 10 items", walk.label)
        step("open Train", walk.open_train, needed=True)
        runs = step("train prior/linear/gbm/mlp and a second mlp seed", walk.train_all,
                    [("prior", 0), ("linear", 0), ("gbm", 0), ("mlp", 0), ("mlp", 1)], needed=True)
        step("open a top-loss row", walk.open_top_loss_row)
        step("compare two seeds from a copied URL", walk.compare_seeds, runs["mlp", 0], runs["mlp", 1], browser)
        step("back to Train", walk.back_to_run, runs["mlp", 1])
        # As a person would: start the new run, the learning curve and the search, then look at each as it ends.
        child = step("new run from a parent", walk.new_run_from_parent, runs["mlp", 1])
        before = step("start a learning curve", walk.start_learning_curve, runs["linear", 0])
        step("start a random search, 4 trials, default space", walk.start_random_search)
        if child is not None:
            step("the new run, from the Tune page to the Train page", walk.watch_the_child, child)
            walk.nav("Tune")
        step("random search to the end", walk.wait_random_search)
        if before is not None:
            step("learning curve to the end", walk.wait_learning_curve, before)
        step("ensemble of the top 3", walk.ensemble)
    finally:
        print(f"walk {name}: {time.time() - started:.0f} s ({', '.join(timings)})")
        walk.context.close()
    assert not failures, f"the walk on {name} failed in {len(failures)} step(s):\n" + "\n".join(failures)
