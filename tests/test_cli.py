"""The CLI: one JSON document with --json, one `error:` line and a non-zero exit on bad input, never a traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_run import run, run_json

from recipe_core import cli
from recipe_core.config import load_settings
from recipe_core.data import db

ROOT = Path(__file__).resolve().parents[1]
WINE = ROOT / "sample_data" / "wine.csv"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    return tmp_path / "home"


def test_ingest_datasets_profile_query(home, capsys):
    made = run_json(capsys, "ingest", WINE, "--name", "wine")
    assert made["name"] == "wine" and made["n_rows"] == 178
    assert {"name": "alcohol", "type": "numeric"}.items() <= made["columns"][0].items() or any(
        c["name"] == "alcohol" and c["type"] == "numeric" for c in made["columns"]
    )
    again = run_json(capsys, "ingest", WINE)
    assert again["id"] == made["id"]  # identical content is the same dataset

    listed = run_json(capsys, "datasets")
    assert [d["id"] for d in listed] == [made["id"]]

    prof = run_json(capsys, "profile", "wine", "--target", "cultivar")
    assert prof["n_rows"] == 178
    assert {c["name"] for c in prof["columns"]} == {c["name"] for c in made["columns"]}
    alcohol = next(c for c in prof["columns"] if c["name"] == "alcohol")
    assert alcohol["n_missing"] == 0 and alcohol["n_distinct"] > 50
    assert all({"kind", "column", "message"} <= w.keys() for w in prof["warnings"])

    page = run_json(capsys, "query", made["id"][:8], "--where", "alcohol > 14", "--sort", "alcohol", "--desc",
                    "--limit", "3")
    wine = pd.read_csv(WINE)
    assert page["n_total"] == int((wine["alcohol"] > 14).sum())
    assert [r["alcohol"] for r in page["rows"]] == sorted(wine["alcohol"], reverse=True)[:3]

    deep = run_json(capsys, "query", "wine", "--limit", "5", "--offset", "170")
    assert [r["__row_id"] for r in deep["rows"]] == [170, 171, 172, 173, 174]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["profile", "nope"], "no dataset"),
        (["ingest", "/no/such/file.csv"], "no such file"),
        (["query", "wine", "--where", "alcohol > (SELECT 1)"], "subquer"),
        (["query", "wine", "--where", "1=1; DROP TABLE data"], ""),
        (["query", "wine", "--sort", "nope"], "nope"),
        (["profile", "wine", "--target", "nope"], "nope"),
        (["bogus"], "invalid choice"),
    ],
)
def test_errors_are_one_line(home, capsys, argv, fragment):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    code, out, err = run(capsys, *argv)
    assert code != 0 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment.lower() in err.lower()


def test_a_bad_file_registers_nothing(home, capsys, tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(os.urandom(4096))
    code, out, err = run(capsys, "ingest", junk)
    assert code != 0 and err.startswith("error: ")
    assert run_json(capsys, "datasets") == []


def test_a_real_process_prints_no_traceback(home, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "recipe_core", "ingest", str(empty), "--json"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "RECIPE_HOME": str(home)})
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


HEAVY = ("torch", "sklearn", "optuna")


def test_commands_that_never_train_never_load_torch(home, capsys):
    # The whole process, __main__ included, as a person starts it: a top-level import of torch anywhere on a
    # command's path costs every command seconds before its first line.
    run_json(capsys, "ingest", WINE, "--name", "wine")
    for argv in (["datasets"], ["runs"], ["profile", "wine"], ["query", "wine", "--where", "alcohol > 13"],
                 ["labels", "sample", "wine", "--target", "cultivar"],
                 ["labels", "summary", "wine", "--target", "cultivar"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "recipe_core", *argv, "--json"], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "RECIPE_HOME": str(home)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import")}
        assert "recipe_core.cli" in loaded and not loaded & set(HEAVY), (argv, sorted(loaded & set(HEAVY)))



def test_a_command_that_reads_a_dataset_bounds_its_own_process(home, capsys, monkeypatch):
    # `python -m recipe_core query` (own_process) caps its address space as the server caps its query worker, and
    # queries on its own connection instead of starting one; main() called in someone's process does neither.
    run_json(capsys, "ingest", WINE, "--name", "wine")
    caps, connections = [], []
    monkeypatch.setattr(cli, "limit_memory", caps.append)
    real_db = db.DatasetDB.__init__

    def spy(self, settings, record, isolated=None):
        real_db(self, settings, record, isolated)
        connections.append(type(self._con).__name__)

    monkeypatch.setattr(db.DatasetDB, "__init__", spy)
    assert cli.main(["query", "wine", "--limit", "1", "--json"], own_process=True) == 0
    assert json.loads(capsys.readouterr().out)["n_total"] == 178
    assert caps == [load_settings().query_memory_bytes] and connections == ["InProcess"]
    assert cli.main(["query", "wine", "--limit", "1", "--json"]) == 0
    assert caps == [load_settings().query_memory_bytes] and connections == ["InProcess", "WorkerProcess"]
    assert cli.main(["runs", "--json"], own_process=True) == 0  # reads no dataset: no cap
    assert len(caps) == 1


def test_out_of_memory_is_one_line(home, capsys, monkeypatch):
    def exhausted(args, settings, store):
        raise MemoryError()

    monkeypatch.setattr(cli.data, "cmd_datasets", exhausted)
    code, out, err = run(capsys, "datasets")
    assert (code, out, err.strip()) == (1, "", "error: out of memory (a command that reads a dataset may use "
                                                "RECIPE_QUERY_MEMORY_MB)")


def test_train_and_runs(home, capsys):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    out = run_json(capsys, "train", "wine", "--target", "cultivar", "--model", "linear", "--seed", "2")
    assert out["status"] == "finished" and out["task"] == "classification"
    assert {"val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1"} <= set(out["metrics"])
    assert set(out["checks"]) >= {"loss_at_init", "overfit_one_batch", "input_independent", "batch_independence",
                                  "capacity"}
    assert all("ok" in c for c in out["checks"].values())
    assert out["checks"]["input_independent"]["ok"] is True
    listed = run_json(capsys, "runs")
    assert [(r["run_id"], r["model"], r["seed"], r["status"]) for r in listed] == [
        (out["run_id"], "linear", 2, "finished")]
    assert listed[0]["dataset_name"] == "wine" and listed[0]["metrics"] == out["metrics"]
    code, text, _ = run(capsys, "runs")
    assert code == 0 and out["run_id"] in text


def test_train_mlp_json_has_every_check_with_numbers(home, capsys):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    out = run_json(capsys, "train", "wine", "--target", "cultivar", "--model", "mlp", "--epochs", "300",
                   "--no-bias-init")
    init = out["checks"]["loss_at_init"]
    assert init["ok"] is True and init["expected"] == pytest.approx(1.0986, abs=1e-4)  # ln 3 without bias init
    assert abs(init["measured"] - init["expected"]) < 0.02 * init["expected"]
    for name in ("overfit_one_batch", "batch_independence", "capacity", "input_independent"):
        assert out["checks"][name]["ok"] is True, out["checks"][name]


@pytest.mark.parametrize("column, values, message", [
    ("t", ["one"] * 30, "only one class"),
    ("t", [5.5] * 30, "constant value"),
    ("t", [None] * 30, "no rows with a value"),
])
def test_train_refuses_a_hopeless_target_in_one_line(home, capsys, tmp_path, column, values, message):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"x": range(30), column: values}).to_csv(path, index=False)
    run_json(capsys, "ingest", path, "--name", "bad")
    task = ["--task", "regression"] if isinstance(values[0], float) else []
    code, out, err = run(capsys, "train", "bad", "--target", column, "--model", "linear", *task)
    assert code != 0 and out == ""
    assert err.startswith("error:") and message in err and err.count("\n") == 1
    assert run_json(capsys, "runs") == []


def test_train_usage_errors_are_one_line(home, capsys):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    for argv in (["train", "wine", "--target", "cultivar", "--model", "svm"],
                 ["train", "wine", "--target", "nope"],
                 ["train", "wine", "--target", "cultivar", "--epochs", "0"],
                 ["train", "wine", "--target", "cultivar", "--seed", "x"]):
        code, out, err = run(capsys, *argv)
        assert code != 0 and err.startswith("error:") and err.count("\n") == 1, (argv, err)


DIGITS = ROOT / "sample_data" / "digits.csv"


def test_labels_sample_add_import_summary_export(home, capsys, tmp_path):
    run_json(capsys, "ingest", DIGITS, "--name", "digits")
    items = run_json(capsys, "labels", "sample", "digits", "--target", "digit", "--n", "10")["items"]
    assert len(items) == 10 and run_json(capsys, "labels", "sample", "digits", "--target", "digit", "--n", "10") == {
        "items": items}
    truth = pd.read_csv(DIGITS)["digit"]
    for item in items[:4]:
        out = run_json(capsys, "labels", "add", "digits", "--target", "digit", "--n", "10", "--annotator", "ann",
                       "--item", item, "--label", truth.iloc[item], "--note", "the loop")
        assert out["stored"] is True
    csv = tmp_path / "bob.csv"
    csv.write_text("item,label\n" + "".join(f"{i},{(truth.iloc[i] + 1) % 10}\n" for i in items[:4]))
    assert run_json(capsys, "labels", "import", "digits", "--target", "digit", "--n", "10", "--annotator", "bob",
                    csv)["imported"] == 4
    summary = run_json(capsys, "labels", "summary", "digits", "--target", "digit", "--n", "10")
    assert summary["n_items"] == 10
    by_name = {a["name"]: a for a in summary["annotators"]}
    assert by_name["ann"]["accuracy"] == 1.0 and by_name["bob"]["accuracy"] == 0.0
    assert by_name["ann"]["n_labelled"] == 4 and by_name["ann"]["ci_low"] < 1.0 == by_name["ann"]["ci_high"]
    assert summary["agreement"][0]["a"] == "ann" and summary["agreement"][0]["n_common"] == 4
    assert summary["suspect_labels"] == []
    out = tmp_path / "all.csv"
    run(capsys, "labels", "export", "digits", "--target", "digit", "--n", "10", out)
    exported = pd.read_csv(out)
    assert len(exported) == 8 and set(exported["annotator"]) == {"ann", "bob"}


def test_labels_errors_are_one_line(home, capsys, tmp_path):
    run_json(capsys, "ingest", DIGITS, "--name", "digits")
    for argv in (["labels", "add", "digits", "--target", "digit", "--annotator", "a", "--item", "0", "--label", "3"],
                 ["labels", "add", "digits", "--target", "digit", "--annotator", "a", "--item", "x", "--label", "3"],
                 ["labels", "import", "digits", "--target", "digit", "--annotator", "a", tmp_path / "missing.csv"],
                 ["labels", "summary", "digits", "--target", "nope"],
                 ["labels", "sample", "digits", "--target", "digit", "--n", "0"],
                 ["labels"]):
        code, out, err = run(capsys, *argv)
        assert code != 0 and err.startswith("error:") and err.count("\n") == 1, (argv, err)


def test_history_and_plot_of_api_runs(home, capsys, tmp_path):
    import recipe_core as rc

    ids = []
    for seed in range(2):
        with rc.start_run(name=f"s{seed}", config={"seed": seed}) as r:
            for step in range(5000):
                r.log(step, val_loss=1.0 / (step + 1) if step != 7 else float("nan"))
        ids.append(r.run_id)
    got = run_json(capsys, "history", ids[0][:8], "--metric", "val_loss")
    assert len(got["points"]) == 5000 and got["points"][3] == [3, 0.25] and got["points"][7] == [7, None]
    code, _, err = run(capsys, "history", ids[0], "--metric", "nope")
    assert code == 2 and err.startswith("error:") and "it logged: val_loss" in err
    for suffix in ("json", "html", "png"):
        out = tmp_path / f"fig.{suffix}"
        made = run_json(capsys, "plot", *ids, "--metric", "val_loss", "--out", out, "--group-seeds")
        assert out.stat().st_size == made["bytes"] > 0 and made["total"] == 10_000
    fig = json.loads((tmp_path / "fig.json").read_text())
    assert any("(2 seeds)" in (t.get("name") or "") for t in fig["data"])
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(capsys, "plot", ids[0], "--metric", "val_loss", "--out", tmp_path / "fig.gif")
    assert code == 2 and "must end in .json, .html or .png" in err
    code, _, err = run(capsys, "plot", "feedbeef", "--metric", "val_loss", "--out", tmp_path / "x.json")
    assert code == 2 and err.count("\n") == 1 and "no run" in err


def test_import_tensorboard_and_lightning_dirs(home, capsys, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    logs = tmp_path / "logs"
    writer = SummaryWriter(str(logs / "tb" / "run1"))
    for step in range(50):
        writer.add_scalar("loss/train", 1.0 / (step + 1), step)
    writer.close()
    version = logs / "lightning_logs" / "version_0"
    version.mkdir(parents=True)
    (version / "metrics.csv").write_text("epoch,step,train_loss,val_loss\n0,0,1.0,\n0,1,0.5,0.75\n")
    (version / "hparams.yaml").write_text("lr: 0.01\n")
    got = run_json(capsys, "import", logs)
    assert [(r["name"], r["metrics"]) for r in got["runs"]] == [
        ("logs/lightning_logs/version_0", {"train_loss": 2, "val_loss": 1}), ("logs/tb/run1", {"loss/train": 50})]
    assert set(got["runs"][0]) >= {"run_id", "name", "metrics"}
    again = run_json(capsys, "import", logs)
    assert [r["run_id"] for r in again["runs"]] == [r["run_id"] for r in got["runs"]]  # no duplicates
    history = run_json(capsys, "history", got["runs"][1]["run_id"], "--metric", "loss/train")
    assert [p[0] for p in history["points"]] == list(range(50))
    for bad in (tmp_path / "missing", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        code, _, err = run(capsys, "import", bad)
        assert code == 2 and err.startswith("error:") and err.count("\n") == 1


def test_tune_and_ensemble_print_their_documented_json(home, capsys):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    out = run_json(capsys, "tune", "wine", "--target", "cultivar", "--model", "linear", "--trials", "3",
                   "--seed", "4", "--workers", "1")
    assert set(out) == {"study", "trials", "best"} and len(out["trials"]) == 3
    assert set(out["trials"][0]) == {"number", "params", "value", "state", "run_id", "worker"}
    ids = [t["run_id"] for t in out["trials"]]
    made = run_json(capsys, "ensemble", *ids)
    assert set(made) == {"run_id", "metrics", "members", "gain_vs_best"} and len(made["members"]) == 3
    assert made["metrics"]["val_loss"] <= sum(t["value"] for t in out["trials"]) / 3 + 1e-9  # Jensen
    top = run_json(capsys, "ensemble", "--top", "2", "--dataset", "wine", "--target", "cultivar")
    assert len(top["members"]) == 2
    code, _, err = run(capsys, "tune", "wine", "--target", "cultivar", "--model", "linear", "--trials", "2",
                       "--space", '[{"name": "l2", "kind": "log", "low": 0, "high": 1}]')
    assert code == 2 and err.count("\n") == 1 and "start above 0" in err
    code, _, err = run(capsys, "ensemble")
    assert code == 2 and err.startswith("error:")


def test_tune_takes_a_long_space_as_json_or_from_a_file_never_a_guess(home, capsys, tmp_path):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    # Longer than a file name may be (the page's default space is ~375 characters): once "File name too long"
    space = '[{"name": "l2", "kind": "log", "low": 0.001, "high": 10}' + " " * 300 + "]"
    out = run_json(capsys, "tune", "wine", "--target", "cultivar", "--model", "linear", "--trials", "2",
                   "--workers", "1", "--space", space)
    assert len(out["trials"]) == 2 and all(0.001 <= t["params"]["l2"] <= 10 for t in out["trials"])
    spec = tmp_path / "space.json"
    spec.write_text(space)
    out = run_json(capsys, "tune", "wine", "--target", "cultivar", "--model", "linear", "--trials", "2",
                   "--workers", "1", "--space-file", spec)
    assert len(out["trials"]) == 2
    for argv, fragment in ((["--space", str(spec)], "--space is not valid JSON"),  # a path is not JSON
                           (["--space-file", tmp_path / "missing.json"], "no such file"),
                           (["--space-file", spec, "--space", space], "not both"),
                           (["--space", '{"name": "l2"}'], "must be a JSON list")):
        code, _, err = run(capsys, "tune", "wine", "--target", "cultivar", "--model", "linear", "--trials", "2",
                           *argv)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
