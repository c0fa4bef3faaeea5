"""Chromium: a user's own broken model, checked from the CLI, opens on Compare to its details from the link alone.

The contract a person follows: `python -m recipe_core check FILE.py:FACTORY --data DATA.npz`, then the Compare page
with `?runs=ID`. The red checks must be named, and the heatmap, the overfit curve, the LR range plot and the batch
as the net saw it (as images) drawn, with no exception box.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from walk_data import CHROMIUM, main_text, on_screen_problem, wait_visible

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

BROKEN_CNN = """
import torch
from torch import nn


class CenteredCNN(nn.Module):
    # the bug: "normalizes" with the batch's mean inside forward, so each output depends on the whole batch
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(1)
        return self.head(h - h.mean(0))


def make():
    return CenteredCNN()
"""


def test_a_checked_model_opens_on_compare_with_every_detail(server, page, tmp_path):
    url, home = server
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = (rng.normal(size=(120, 1, 8, 8)) + y[:, None, None, None]).astype(np.float32)  # brighter images, higher class
    np.savez(tmp_path / "images.npz", x=x, y=y)
    (tmp_path / "broken.py").write_text(BROKEN_CNN)
    env = {**os.environ, "RECIPE_HOME": str(home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RECIPE_STORE_URL", None)
    out = subprocess.run([sys.executable, "-m", "recipe_core", "check", f"{tmp_path / 'broken.py'}:make",
                          "--data", str(tmp_path / "images.npz"), "--name", "centered cnn", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["checks"]["batch_independence"]["ok"] is False

    page.goto(f"{url}/compare?runs={doc['run_id']}")
    wait_visible(page, "open the check run", page.get_by_role("heading", name="Checks of run centered cnn"), 60)
    wait_visible(page, "its heatmap", page.get_by_text("Which output depends on which input (the batch)").first)
    for title in ("Overfitting one batch", "Learning-rate range test", "The batch as the net saw it"):
        wait_visible(page, title, page.get_by_text(title).first)
    text = main_text(page)
    assert "FAIL batch_independence" in text.replace("\n", " ") or "FAIL\nbatch_independence" in text
    assert "pairs of examples mix" in text and "Examples that mix (output ← input)" in text
    assert page.locator(".js-plotly-plot .layer-above image, .js-plotly-plot image").count() >= 16  # the images
    assert on_screen_problem(page) is None
