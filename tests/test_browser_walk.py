"""One real-browser walk of the whole recipe with the defaults a user sees (issue 12, "Done when").

Per dataset, in Chromium against `streamlit run app.py`: upload the file through the uploader, profile it, filter
and open a row, label 10 items, train prior/linear/gbm/mlp with the default settings, open a top-loss row, compare
two seeds from a copied URL in a fresh browser context, a new run from a parent, a learning curve, a 4-trial random
search with the default space to the end, and an ensemble of the top 3. The datasets are public, not the samples,
and ship with plotly (tests/walk_data.py): iris as CSV (classification) and carshare as Excel (regression), the
latter with injected duplicate rows and missing values. Any exception box, "Page not found", failed run or job that
does not end within its bound fails the walk, naming the step and quoting the page.
RECIPE_WALK_SHOTS=<dir> saves a screenshot of every step there.
"""
from pathlib import Path

import pytest
from recipe_walk import walk_the_whole_recipe
from walk_data import CHROMIUM

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def test_walk_the_whole_recipe_on_iris_csv(server, browser, tmp_path):
    walk_the_whole_recipe(server, browser, tmp_path, "iris-csv")
