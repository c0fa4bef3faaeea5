"""The real browser: Debian's Chromium, driven by Playwright, against `streamlit run app.py`."""
from pathlib import Path

import pytest
from playwright.sync_api import expect
from trained import wait_for
from walk_data import CHROMIUM

from recipe_core.tracking.store import Store

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
# Playwright's assertions wait 5 s by default; on 2 busy cores (a job, a server, a browser) a page can take longer
expect.set_options(timeout=30_000)


def test_first_visit_is_a_deep_link_to_a_row(server, page):
    # The pitfall in DESIGN.md: on a fresh server the first visitor of a shared link gets the page without
    # app.py. The page must still render its sidebar, the dataset and target in the URL, and the row.
    url, home = server
    wine = Store(f"sqlite:///{home / 'recipe.db'}")
    # A deep link to a page not the root starts the session; a dataset nobody has is refused in one line.
    page.goto(f"{url}/train?dataset=__not_yet__")
    page.get_by_text("You may not see this dataset, or it does not exist.").wait_for()
    page.goto(f"{url}/train")
    page.get_by_text("Target column").first.wait_for()
    wine_id = wine.get_dataset("wine").id
    page.goto(f"{url}/?dataset={wine_id}&target=cultivar&row=5")  # the Data page is the root: /data is not a page
    page.get_by_text("Row 5", exact=True).wait_for()
    expect(page.get_by_role("combobox", name="Dataset")).to_have_value("wine")
    expect(page.get_by_role("combobox", name="Target column")).to_have_value("cultivar")
    page.wait_for_timeout(1000)  # "Page not found" is a dialog drawn after the page
    assert "Traceback" not in page.content() and "Page not found" not in page.content()


def test_upload_a_csv_and_see_its_row_count(server, page, tmp_path):
    csv = tmp_path / "flowers.csv"
    csv.write_text("petal,colour\n" + "".join(f"{i / 10},{'red' if i % 3 else 'blue'}\n" for i in range(1234)))
    url, _ = server
    page.goto(url)
    page.get_by_text("Add a dataset").first.wait_for()
    page.locator("input[type=file]").wait_for(state="attached")
    dropzone = page.get_by_test_id("stFileUploaderDropzone")
    if not dropzone.is_visible():  # the expander starts closed once datasets exist
        page.get_by_text("Add a dataset").first.click()
        expect(dropzone).to_be_visible()
    page.locator("input[type=file]").set_input_files(str(csv))
    page.get_by_text("flowers.csv").wait_for()  # the upload has reached the server
    page.get_by_role("button", name="Add dataset").click()
    page.get_by_text("Added 'flowers': 1,234 rows, 2 columns.").wait_for()
    page.get_by_text("1,234 rows · 2 columns").first.wait_for()  # the sidebar now shows the new dataset
    page.screenshot(path=str(tmp_path / "after_upload.png"), full_page=True)


def test_train_a_baseline_then_cancel_a_live_run(server, page):
    url, home = server
    page.goto(url)
    page.get_by_text("Target column").first.wait_for()  # the samples are registered on the first visit
    wine_id = Store(f"sqlite:///{home / 'recipe.db'}").get_dataset("wine").id
    page.goto(f"{url}/train?dataset={wine_id}&target=cultivar")
    page.get_by_text("124 train · 27 validation · 27 test").wait_for()
    page.get_by_role("radio", name="linear", exact=True).click()
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Validation metrics (27 examples, the whole split)").wait_for(timeout=120_000)
    expect(page.get_by_text("pass input_independent")).to_be_visible()
    # A long MLP: the page shows live progress and curves while the job trains in its own process, and cancels it.
    page.get_by_role("radio", name="mlp", exact=True).click()
    page.get_by_label("Epochs (0: about 2,000 steps)").fill("100000")
    page.get_by_role("button", name="Train").click()
    store = Store(f"sqlite:///{home / 'recipe.db'}")
    for _ in range(3):  # the live fragment redraws every second: a click on the button it just replaced is lost
        page.get_by_role("button", name="Cancel").click(timeout=120_000)
        try:
            wait_for(lambda: any(r.cancel_requested or r.status == "cancelled" for r in store.list_runs()), 10)
            break
        except AssertionError:
            continue
    page.get_by_text("Run cancelled: cancelled on request").wait_for(timeout=60_000)
    assert "Traceback" not in page.content()


def test_label_three_items_with_number_keys(server, page):
    url, home = server
    page.goto(url)
    page.get_by_text("Target column").first.wait_for()
    store = Store(f"sqlite:///{home / 'recipe.db'}")
    digits = store.get_dataset("digits")
    page.goto(f"{url}/label?dataset={digits.id}&target=digit")
    name = page.get_by_role("textbox", name="Your name")
    name.fill("kim")
    name.press("Enter")
    page.get_by_text("0 / 100 labelled by kim").wait_for()
    for n, key in enumerate(["3", "7", "1"], start=1):
        page.get_by_role("button", name="Next").wait_for()  # the shortcuts exist once the buttons are drawn
        page.get_by_text("labelled by kim").click()  # focus the page, not a text box
        page.keyboard.press(key)
        page.get_by_text(f"{n} / 100 labelled by kim").wait_for()
    events = store.label_events(digits.id, "digit")
    assert [e.label for e in events if e.annotator == "kim"] == ["3", "7", "1"]
    assert "Traceback" not in page.content()


def test_compare_a_shared_link_and_import_a_lightning_zip(server, page, tmp_path):
    import io
    import zipfile

    import recipe_core as rc

    url, home = server
    store_url = f"sqlite:///{home / 'recipe.db'}"
    ids = []
    for seed in range(2):  # "another machine": a script logging into the same store
        with rc.start_run(name=f"script-s{seed}", config={"lr": 1e-3, "seed": seed}, store_url=store_url) as run:
            for step in range(5000):
                run.log(step, val_loss=1.0 / (1 + step * (seed + 1)))
        ids.append(run.run_id)
    page.goto(f"{url}/compare?runs={','.join(ids)}&metric=val_loss&group_seeds=1&log_y=1")
    page.get_by_text("of 10,000 points shown").wait_for()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    expect(page.get_by_text("script-s0 (2 seeds)").first).to_be_visible()  # the legend of the seed group
    # A zip of Lightning CSVLogger logs, uploaded on the page.
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr("lightning_logs/version_0/metrics.csv",
                    "epoch,step,train_loss,val_loss\n" + "".join(
                        f"{i // 10},{i},{1 / (i + 1)},{'' if i % 10 else 2 / (i + 1)}\n" for i in range(200)))
        zf.writestr("lightning_logs/version_0/hparams.yaml", "lr: 0.01\nbatch_size: 32\n")
    logs = tmp_path / "logs.zip"
    logs.write_bytes(data.getvalue())
    page.locator("input[type=file]").set_input_files(str(logs))
    page.get_by_text("logs.zip").wait_for()
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_text("Imported 1 run(s): lightning_logs/version_0").wait_for()
    page.get_by_text("20 of 20 points shown").wait_for()  # val_loss was logged every 10th step
    assert "Traceback" not in page.content()
