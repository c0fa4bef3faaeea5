"""Helpers of the real-browser walk: public datasets a package ships offline, the server, and waits that fail fast.

Not the samples: sample_data/ holds sklearn's breast_cancer, diabetes, digits, wine and plotly's tips and gapminder.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
EXCEPTION = '[data-testid="stException"]'


# -- the datasets ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WalkData:
    id: str  # the pytest id
    file_name: str
    target: str
    task: str
    filter: tuple[str, str, str]  # column, operator, value: a filter a person would try first
    notes: str


def iris_csv(folder: Path) -> Path:
    """plotly.data.iris() as CSV, classification of `species` (150 rows; one exact duplicate row, as shipped).

    `species_id` is dropped: it is `species` as a number, and would make every model perfect.
    """
    import plotly.data

    path = folder / "iris.csv"
    plotly.data.iris().drop(columns="species_id").to_csv(path, index=False)
    return path


def carshare_xlsx(folder: Path) -> Path:
    """plotly.data.carshare() as Excel, regression of `car_hours` (249 rows), made messy on purpose.

    Deterministically: rows 0-7 appended again (8 exact duplicates), 3 missing centroid_lat (rows 10, 20, 30),
    2 missing peak_hour (rows 40, 50) and 1 missing target (row 60, excluded from the split): 257 rows.
    """
    import plotly.data

    frame = plotly.data.carshare()
    frame.loc[[10, 20, 30], "centroid_lat"] = np.nan
    frame["peak_hour"] = frame["peak_hour"].astype("float64")
    frame.loc[[40, 50], "peak_hour"] = np.nan
    frame.loc[60, "car_hours"] = np.nan
    frame = pd.concat([frame, frame.iloc[:8]], ignore_index=True)
    path = folder / "carshare.xlsx"
    frame.to_excel(path, index=False)
    return path


DATASETS = {
    "iris-csv": (WalkData("iris-csv", "iris.csv", "species", "classification", ("petal_length", ">", "4"),
                          "clean, one duplicate row"), iris_csv),
    "carshare-xlsx": (WalkData("carshare-xlsx", "carshare.xlsx", "car_hours", "regression", ("peak_hour", ">=", "12"),
                               "messy: duplicates and missing values"), carshare_xlsx),
}


# -- the server --------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(home: Path, log: Path):
    """`streamlit run app.py` on a free loopback port with its own RECIPE_HOME; yields the base URL."""
    port = free_port()
    env = {**os.environ, "RECIPE_HOME": str(home)}
    env.pop("RECIPE_STORE_URL", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while True:
                try:
                    if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                        break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError("streamlit did not start: " + log.read_text(errors="replace")[-2000:])
                    time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- waits that fail on what the walk must never see ---------------------------------------------------------------
class WalkFailure(AssertionError):
    pass


def on_screen_problem(page) -> str | None:
    """The text of an exception box or a "Page not found", if the page shows one."""
    boxes = page.locator(EXCEPTION)
    if boxes.count():
        return "exception box: " + " | ".join(t.strip()[:600] for t in boxes.all_inner_texts())
    if page.get_by_text("Page not found").count():
        return "Page not found: " + page.get_by_text("Page not found").first.locator("xpath=..").inner_text()[:300]
    return None


def wait_until(page, step: str, done, timeout: float, bad: re.Pattern | None = None, why=None, poll: float = 0.25):
    """Poll `done()` until truthy; fail at once on an exception box, a "Page not found" or text matching `bad`,
    and fail after `timeout` seconds with `why()` (what the page says instead)."""
    deadline = time.time() + timeout
    while True:
        problem = on_screen_problem(page)
        if problem:
            raise WalkFailure(f"[{step}] {problem}")
        if bad is not None:
            hit = page.get_by_text(bad)
            if hit.count():
                raise WalkFailure(f"[{step}] the page says: {hit.first.inner_text()[:600]}")
        value = done()
        if value:
            return value
        if time.time() > deadline:
            extra = why() if why else ""
            raise WalkFailure(f"[{step}] not done within {timeout:.0f} s. {extra}")
        page.wait_for_timeout(poll * 1000)


def visible(locator) -> bool:
    try:
        return locator.first.is_visible()
    except Exception:  # detached while Streamlit redraws
        return False


def wait_visible(page, step: str, locator, timeout: float = 30, bad: re.Pattern | None = None) -> None:
    wait_until(page, step, lambda: visible(locator), timeout, bad,
               why=lambda: "The main area reads: " + main_text(page)[-1200:])


def main_text(page) -> str:
    try:
        return re.sub(r"\s+", " ", page.get_by_test_id("stMain").inner_text(timeout=2000))
    except Exception:
        return "(unreadable)"


def click_link_cell(page, frame, row: int = 0, timeout: float = 15):
    """Click the link shown in data row `row` of a st.dataframe (a canvas): the point where the cursor becomes a
    pointer, scanning the row from the right, as a person moves the mouse onto the link. Returns the new page
    (a LinkColumn opens its link in a new tab)."""
    frame.scroll_into_view_if_needed()
    box = frame.bounding_box()
    y = box["y"] + 35 * (row + 1) + 17  # header and rows are 35 px high
    for x in range(int(box["x"] + box["width"] - 6), int(box["x"]), -6):
        page.mouse.move(x, y)
        page.wait_for_timeout(20)
        cursor = page.evaluate("([x, y]) => getComputedStyle(document.elementFromPoint(x, y)).cursor", [x, y])
        if cursor == "pointer":
            with page.context.expect_page(timeout=timeout * 1000) as opened:
                page.mouse.click(x - 2, y)
            new = opened.value
            new.set_default_timeout(60_000)
            return new
    raise WalkFailure(f"no link in row {row} of the table")


def click_row_marker(page, frame, row: int = 0) -> None:
    """Select data row `row` of a single-row-selection st.dataframe by its row marker (the leftmost cell)."""
    for attempt in range(3):  # the table may be redrawn (replaced) just as it is clicked
        try:
            frame.scroll_into_view_if_needed(timeout=10_000)
            box = frame.bounding_box()
            break
        except Exception:
            if attempt == 2:
                raise
            page.wait_for_timeout(1000)
    page.mouse.click(box["x"] + 16, box["y"] + 35 * (row + 1) + 17)
