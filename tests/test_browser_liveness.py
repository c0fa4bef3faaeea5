"""Chromium: a page left open tells the truth about a run whose process died, without anyone touching it."""
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from walk_data import CHROMIUM, free_port

ROOT = Path(__file__).resolve().parents[1]
BEAT = "0.5"  # heartbeats every half second: a silent run reads lost after 3 s
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

SCRIPT = """
import sys, time
import recipe_core as rc
run = rc.start_run(name="long script", store_url=sys.argv[1])
for step in range(200):
    run.log(step, loss=1.0 / (step + 1))
run.flush()
print(run.run_id, flush=True)
time.sleep(300)
"""


@pytest.fixture
def served(tmp_path):
    home, port = tmp_path / "home", free_port()
    env = {**os.environ, "RECIPE_HOME": str(home), "RECIPE_HEARTBEAT_S": BEAT, "PYTHONPATH": str(ROOT)}
    env.pop("RECIPE_STORE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.3)
    yield url, env, f"sqlite:///{home / 'recipe.db'}"
    proc.terminate()
    proc.wait(10)


def test_an_open_compare_page_shows_a_killed_script_as_lost(served):
    url, env, store_url = served
    script = subprocess.Popen([sys.executable, "-c", SCRIPT, store_url], stdout=subprocess.PIPE, text=True, env=env,
                              cwd=ROOT)
    run_id = script.stdout.readline().strip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/compare?runs={run_id}&metric=loss")
        page.get_by_text("Live: a selected run is still running").wait_for()
        os.kill(script.pid, signal.SIGKILL)
        script.wait(10)
        # nobody touches the page: its own polling must notice within the 6 silent beats (3 s) and a few polls
        page.get_by_text("Live: a selected run is still running").wait_for(state="detached", timeout=30_000)
        page.screenshot(path=str(Path(store_url[len("sqlite:///"):]).parent / "lost.png"), full_page=True)
        cells = page.locator("[data-testid='stDataFrame'] [role='gridcell']").all_inner_texts()
        assert "lost" in cells, cells[:40]
        assert "Traceback" not in page.content()
        browser.close()
