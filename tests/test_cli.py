"""The CLI: one JSON document with --json, one `error:` line and a non-zero exit on bad input, never a traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recipe_core.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
WINE = ROOT / "sample_data" / "wine.csv"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    return tmp_path / "home"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


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
