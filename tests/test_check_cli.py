"""`python -m recipe_core check FILE.py:FACTORY --data DATA.npz`: the JSON contract, a run in the store (source
"check") for every invocation, exit 0 whatever the verdicts, and every bad input one `error:` line."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_run import run, run_json
from own_models import blobs, next_token_text

from recipe_core.cli import check as check_cli
from recipe_core.training import verdicts

ROOT = Path(__file__).resolve().parents[1]

MODELS = '''
import torch
from torch import nn

print("models.py prints on import")  # must not reach stdout's JSON


def good():
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))


class BatchMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.last = nn.Linear(6, 32), nn.Linear(32, 3)

    def forward(self, x):
        h = torch.relu(self.first(x))
        return self.last(h - h.mean(dim=0, keepdim=True))


def broken():
    return BatchMean()


def raises():
    raise RuntimeError("no GPU here\\nsecond line")


def not_a_model():
    return 42


class FirstRowOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(6, 3)

    def forward(self, x):
        return self.net(x)[:1]


def wrong_shape():
    return FirstRowOnly()


class RaisesInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(6, 3)

    def forward(self, x):
        raise ValueError("forward is not written yet")


def forward_raises():
    return RaisesInForward()


NOT_CALLABLE = 3
'''


@pytest.fixture
def files(tmp_path, settings):
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "bad_import.py").write_text("import no_such_module_here\n")
    (tmp_path / "bad_syntax.py").write_text("def f(:\n")
    x, y = blobs(n=120)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return tmp_path


def model(files, name):
    return f"{files / 'models.py'}:{name}"


def test_json_contract_in_a_real_process(files):
    out = subprocess.run([sys.executable, "-m", "recipe_core", "check", model(files, "good"),
                          "--data", files / "data.npz", "--json"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # one JSON document, nothing else: the model file's print went to stderr
    assert set(doc) == {"run_id", "checks"}
    assert "models.py prints on import" in out.stderr
    expected = {"loss_at_init", "gradients", "batch_independence", "overfit_one_batch", "input_independent",
                "lr_range", "just_before_the_net"}
    assert set(doc["checks"]) == expected  # no causality without --causal
    for name, c in doc["checks"].items():
        assert c["ok"] in (True, False, None) and isinstance(c["message"], str) and c["message"], name
    init = doc["checks"]["loss_at_init"]
    assert init["ok"] is True and abs(init["expected"] - np.log(3)) < 0.05 and init["measured"] > 0
    assert [n for n, c in doc["checks"].items() if c["ok"] is False] == []
    assert doc["checks"]["lr_range"]["ok"] is None


def test_the_run_is_in_the_store_with_its_checks(files, store, capsys):
    doc = run_json(capsys, "check", model(files, "good"), "--data", files / "data.npz", "--name", "my mlp")
    r = store.get_run(doc["run_id"])
    assert (r.source, r.status, r.name, r.model) == ("check", "finished", "my mlp", "Sequential")
    assert set(r.checks) == set(doc["checks"])
    assert verdicts.read(r.checks)["gradients"].ok is True
    assert r.config["factory"] == "good" and r.config["loss"] == "cross_entropy" and r.config["examples"] == 120
    assert r.config["x_shape"] == [120, 6] and r.config["y_dtype"] == "int64"
    assert {"loss_at_init", "overfit_loss", "suggested_lr"} <= set(r.metrics)
    curve = store.histories([r.id], "overfit_loss")[r.id]
    assert len(curve.step) > 2 and curve.value[-1] < curve.value[0]  # the overfit curve, chartable on Compare
    assert "lr_range_loss" not in r.metrics  # the LR curve is against the LR, drawn with its details, not by step
    assert store.get_json(r.id, "batch_seen") is None or "shape" in store.get_json(r.id, "batch_seen")


def test_a_broken_model_is_a_red_check_and_exit_0(files, store, capsys):
    doc = run_json(capsys, "check", model(files, "broken"), "--data", files / "data.npz")
    bi = doc["checks"]["batch_independence"]
    assert bi["ok"] is False and bi["pairs"], bi["message"]
    assert store.get_run(doc["run_id"]).checks["batch_independence"]["ok"] is False

    code, out, err = run(capsys, "check", model(files, "broken"), "--data", files / "data.npz")
    assert code == 0, err
    assert "FAIL batch_independence:" in out and "PASS loss_at_init:" in out
    assert "on the Compare page" in out.splitlines()[-1]


def test_causal_checks_a_sequence_model(tmp_path, settings, capsys):
    (tmp_path / "seq.py").write_text(textwrap.dedent('''
        import sys
        sys.path.insert(0, %r)
        from own_models import TinyTransformer

        def masked():
            return TinyTransformer(causal=True)

        def unmasked():
            return TinyTransformer(causal=False)
    ''' % str(ROOT / "tests")))
    x, y = next_token_text(n=48)
    np.savez(tmp_path / "seq.npz", x=x, y=y)
    doc = run_json(capsys, "check", f"{tmp_path / 'seq.py'}:unmasked", "--data", tmp_path / "seq.npz", "--causal")
    assert doc["checks"]["causality"]["ok"] is False and doc["checks"]["causality"]["first_leak"]


def test_the_cli_knows_the_losses_the_checks_know():
    from recipe_core.training import model_checks

    assert check_cli.LOSSES == tuple(model_checks.LOSSES)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def bad_data(files) -> dict:
    x, y = blobs(n=20)
    d = files
    (d / "text.npz").write_text("not a zip")
    return {
        "missing": d / "nope.npz",
        "not_npz": d / "text.npz",
        "no_y": _npz(d / "no_y.npz", x=x),
        "pickled": _npz(d / "pickled.npz", x=np.array([{"a": 1}] * 20, dtype=object), y=y),
        "strings": _npz(d / "strings.npz", x=np.array(["a"] * 20), y=y),
        "lengths": _npz(d / "lengths.npz", x=x, y=y[:-1]),
        "one_example": _npz(d / "one.npz", x=x[:1], y=y[:1]),
        "scalar": _npz(d / "scalar.npz", x=np.float32(1.0), y=y),
        "causal_float": _npz(d / "cfloat.npz", x=np.zeros((20, 5), np.float32), y=np.zeros((20, 5), np.int64)),
        "causal_3d": _npz(d / "c3d.npz", x=np.zeros((20, 5, 2), np.int64), y=np.zeros((20, 5), np.int64)),
    }


BAD = [
    # (factory, data key, extra args, fragment of the one error line)
    ("nope.py:good", "ok", [], "no such file"),
    ("models.txt:good", "ok", [], "must be a .py"),
    ("models.py", "ok", [], "FILE.py:NAME"),
    ("models.py:1abc", "ok", [], "not a Python name"),
    ("models.py:missing", "ok", [], "defines no 'missing'"),
    ("models.py:NOT_CALLABLE", "ok", [], "not a callable"),
    ("bad_import.py:f", "ok", [], "importing bad_import.py raised ModuleNotFoundError"),
    ("bad_syntax.py:f", "ok", [], "importing bad_syntax.py raised SyntaxError"),
    ("models.py:raises", "ok", [], "the factory raised RuntimeError: no GPU here"),
    ("models.py:not_a_model", "ok", [], "Module"),
    ("models.py:wrong_shape", "ok", [], "the model returned [1, 3] for labels"),
    ("models.py:forward_raises", "ok", [], "ValueError: forward is not written yet"),
    ("models.py:good", "missing", [], "no such file"),
    ("models.py:good", "not_npz", [], "not an .npz"),
    ("models.py:good", "no_y", [], "no array 'y'"),
    ("models.py:good", "pickled", [], "Python objects"),
    ("models.py:good", "strings", [], "must hold numbers"),
    ("models.py:good", "lengths", [], "same number of examples"),
    ("models.py:good", "one_example", [], "at least 2"),
    ("models.py:good", "scalar", [], "first dimension"),
    ("models.py:good", "causal_float", ["--causal"], "integer token ids"),
    ("models.py:good", "causal_3d", ["--causal"], "[N, T]"),
    ("models.py:good", "ok", ["--tolerance", "-1"], "tolerance"),
    ("models.py:good", "ok", ["--loss", "hinge"], "invalid choice"),
]


@pytest.mark.parametrize("factory, data, extra, fragment", BAD, ids=[f"{f}-{d}-{''.join(e)}" for f, d, e, _ in BAD])
def test_every_bad_input_is_one_error_line(files, store, capsys, factory, data, extra, fragment):
    path = files / "data.npz" if data == "ok" else bad_data(files)[data]
    code, out, err = run(capsys, "check", files / factory, "--data", path, "--json", *extra)
    # stderr: the model file's own print (redirected off stdout), then the one error line
    lines = [line for line in err.strip().splitlines() if line != "models.py prints on import"]
    assert code != 0 and out == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert fragment in lines[0]
    # A model that raised ended its run failed with the same line; nothing is left running.
    assert not [r for r in store.list_runs() if r.status in ("running", "queued")]
    for r in store.list_runs():
        assert r.status == "failed" and r.source == "check" and r.reason and r.reason in lines[0]


def test_a_file_too_large_for_the_limit_is_refused_unread(files, monkeypatch, capsys):
    np.savez_compressed(files / "big.npz", x=np.zeros((20_000, 100), np.float32), y=np.zeros(20_000, np.int64))
    monkeypatch.setenv("RECIPE_MAX_UPLOAD_MB", "1")
    code, _, err = run(capsys, "check", model(files, "good"), "--data", files / "big.npz")
    assert code == 2 and "above the 1 MB limit" in err and len(err.strip().splitlines()) == 1
