"""Hostile text in the real browser: names, columns, classes, runs and notes written as markdown images, bare URLs
and HTML load nothing and link nowhere on any page, and read as typed. A local listener plays the attacker's host.
"""
import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest
from planted import image, plant
from playwright.sync_api import expect
from walk_data import CHROMIUM

from recipe_core.config import load_settings
from recipe_core.tracking.store import Store

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
# Playwright's assertions wait 5 s by default; on 2 busy cores (a job, a server, a browser) a page can take longer
expect.set_options(timeout=30_000)
INVISIBLE = "\u2060"  # the word joiner that keeps a shown URL from being turned into a link


@pytest.fixture(scope="module")
def listener():
    """The attacker's host: a local HTTP server that records every request it gets."""
    seen = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(204)
            self.end_headers()

        do_HEAD = do_POST = do_GET

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def planted(server, listener):
    """The values of test_hostile_text.plant, on the listener, planted before the first visit. Each image has its own
    path, so a request names the place that rendered it."""
    url, home = server
    host = f"http://127.0.0.1:{listener[0]}"
    settings = load_settings({"RECIPE_HOME": str(home)})
    return {"url": url, "img": functools.partial(image, host), **plant(settings, Store(settings.store_url), host)}


def visit(page, planted, path: str, **params) -> None:
    query = urlencode({"dataset": planted["dataset"], "target": planted["target"], **params})
    page.goto(f"{planted['url']}/{path}?{query}")
    page.get_by_text("Target column").first.wait_for()


def assert_inert(page, listener, shot: Path) -> None:
    """Once the page has drawn: nothing reached the listener, nothing in the page points at it, no traceback."""
    port, seen = listener
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=30_000)  # the script run has ended
    page.wait_for_load_state("networkidle")
    # The app scrolls inside its main area, so a full-page screenshot needs a window as tall as that area.
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(height, 8000))})
    page.wait_for_timeout(500)
    page.screenshot(path=str(shot), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
    asked = list(seen)
    seen.clear()  # the next page is judged on its own
    assert asked == [], f"the browser asked the attacker's host for {asked}"
    pointing = page.evaluate(
        """port => [...document.querySelectorAll('img, a, image, source, iframe, link')]
               .map(e => e.tagName + ' ' + (e.getAttribute('src') || e.getAttribute('href')
                                            || e.getAttribute('xlink:href') || ''))
               .filter(u => u.includes('127.0.0.1:' + port))""", str(port))
    assert pointing == []
    assert "Traceback" not in page.content()
    expect(page.get_by_test_id("stException")).to_have_count(0)


def shows(page, *texts: str) -> None:
    """Each text reads as typed somewhere on the page (its visible text, or a chart's)."""
    shown = (page.inner_text("body") + " ".join(page.locator(".js-plotly-plot").all_text_contents()))
    for text in texts:
        assert text in shown.replace(INVISIBLE, ""), text


def test_data_page(page, planted, listener, tmp_path):
    img = planted["img"]
    visit(page, planted, "data")
    page.get_by_text("Every column").wait_for()
    assert_inert(page, listener, tmp_path / "data-overview.png")
    shows(page, f"{img(10)} · 300 rows", f"from {img(9)}.csv", f"renamed to '{img(1)}_2'",
          f"constant · {img(4)}: '{img(4)}' is constant: its only value is '{img(8)}'")

    page.get_by_role("radio", name="Columns", exact=True).click()
    page.locator(".js-plotly-plot").nth(4).wait_for()  # one histogram per column
    assert_inert(page, listener, tmp_path / "data-columns.png")
    shows(page, img(1) + "_2", img(2))  # histogram titles

    page.get_by_role("radio", name="Target", exact=True).click()
    page.get_by_text("looks like a").wait_for()
    assert_inert(page, listener, tmp_path / "data-target.png")
    shows(page, f"{img(3)} looks like a classification target")

    visit(page, planted, "data", row=0)
    page.get_by_text("Row 0", exact=True).wait_for()
    page.get_by_role("textbox", name="Value", exact=True).fill(img(23))  # refused by a number column, quoting both
    page.get_by_role("button", name="Add filter").click()
    page.get_by_test_id("stAlert").first.wait_for()
    assert_inert(page, listener, tmp_path / "data-rows.png")
    shows(page, img(23))


def test_label_page(page, planted, listener, tmp_path):
    img = planted["img"]
    visit(page, planted, "label")
    name = page.get_by_role("textbox", name="Your name")
    name.fill(img(24))
    name.press("Enter")
    page.get_by_role("button", name="Next").wait_for()
    page.locator("[class*='st-key-class'] button").first.click()  # the first class
    page.get_by_text("Stored: item").wait_for()
    assert_inert(page, listener, tmp_path / "label.png")
    shows(page, f"labelled by {img(24)}", img(2), "Stored: item", f"= {img(6)}", img(7))  # the classes' buttons


def test_train_page_finished_and_failed_runs(page, planted, listener, tmp_path):
    img = planted["img"]
    visit(page, planted, "train", run=planted["done"])
    page.get_by_text("Validation metrics").wait_for()
    assert_inert(page, listener, tmp_path / "train-finished.png")
    shows(page, f"Run {img(11)}", f"by {img(12)}")

    visit(page, planted, "train", run=planted["failed"])
    page.get_by_text("Run failed").wait_for()
    assert_inert(page, listener, tmp_path / "train-failed.png")
    shows(page, f"Run failed: {img(16)}", f"Run {planted['link']}")


def test_compare_page(page, planted, listener, tmp_path):
    img = planted["img"]
    ids = ",".join([planted["done"], planted["failed"], planted["child"]])
    page.goto(f"{planted['url']}/compare?runs={ids}&metric=val_loss")
    page.get_by_text("points shown").wait_for()
    page.get_by_role("button", name="Add note").wait_for()
    assert_inert(page, listener, tmp_path / "compare.png")
    shows(page, f"hypothesis: {img(18)}", f"→ {img(17)}", f"{img(21)} on {img(11)}", img(22),
          planted["child_name"])  # in the legend, as typed


def test_tune_page(page, planted, listener, tmp_path):
    visit(page, planted, "tune", run=planted["done"])
    page.get_by_text("From run").wait_for()
    assert_inert(page, listener, tmp_path / "tune.png")
    shows(page, planted["img"](15))  # the parent's left-out column, in the list of changes
