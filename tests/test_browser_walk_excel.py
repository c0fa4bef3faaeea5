"""The whole-recipe walk of test_browser_walk.py on the second public dataset: carshare as an Excel workbook
(regression), with injected duplicate rows and missing values. A file of its own, so each walk can be run alone."""
from pathlib import Path

import pytest
from recipe_walk import walk_the_whole_recipe
from walk_data import CHROMIUM

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def test_walk_the_whole_recipe_on_carshare_xlsx(server, browser, tmp_path):
    walk_the_whole_recipe(server, browser, tmp_path, "carshare-xlsx")
