"""One neutralizing CSV writer for every CSV the app writes: rows, labels, run histories."""
import csv
import io

import pandas as pd
import pyarrow as pa

import recipe_core as rc
from recipe_core import csv_export
from recipe_core.compare import comparison
from recipe_core.labelling import labels
from recipe_core.tracking.records import LabelEvent

LIVE = ["=HYPERLINK(\"http://x\")", "+1+2", "-3+cmd", "@SUM(1+1)", "\ttab", "\rcr"]


def read(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))


def test_frames_neutralize_text_and_headers_but_not_numbers():
    frame = pd.DataFrame({"=name": LIVE + ["plain"], "n": [-1.5, -2, 3, 4, 5, 6, 7], "mixed": [None, "-x", 1, 2.5,
                                                                                            "ok", "@a", "b"]})
    rows = read(csv_export.frame_csv(frame))
    assert rows[0] == ["'=name", "n", "mixed"]
    assert [r[0] for r in rows[1:]] == ["'" + v for v in LIVE] + ["plain"]
    assert [r[1] for r in rows[1:3]] == ["-1.5", "-2"]  # numbers stay numbers
    assert [r[2] for r in rows[1:]] == ["", "'-x", "1", "2.5", "ok", "'@a", "b"]


def test_arrow_batches_neutralize_the_same_way():
    batch = pa.RecordBatch.from_pydict({"t": LIVE + [None, "fine"], "x": list(range(-4, 4))})
    rows = read(b"".join(csv_export.batches_csv(["@t", "x"], [batch])))
    assert rows[0] == ["'@t", "x"]
    assert [r[0] for r in rows[1:]] == ["'" + v for v in LIVE] + ["", "fine"]
    assert [r[1] for r in rows[1:3]] == ["-4", "-3"]


def test_the_label_export_neutralizes_the_datasets_own_labels_too(store):
    base = labels.Baseline("d", "kind", "classification", ("@SUM(1+1)", "ok"), (1, 2), {1: "@SUM(1+1)", 2: "ok"})
    store.add_label(LabelEvent("e1", "d", "kind", 1, "=ann", "@SUM(1+1)", note="-note"))
    rows = read(labels.export_bytes(base, store.label_events("d", "kind")))
    header, row = rows[0], rows[1]
    got = dict(zip(header, row))
    assert (got["annotator"], got["label"], got["dataset_label"], got["note"]) == (
        "'=ann", "'@SUM(1+1)", "'@SUM(1+1)", "'-note")


def test_the_compare_export_neutralizes_run_names(settings, store):
    with rc.start_run(name='=HYPERLINK("http://evil")', store_url=store.url) as run:
        run.log(0, **{"-loss": -1.0})
    runs_ = comparison.selected_runs(store, [run.run_id])
    frame = comparison.histories_frame(runs_, comparison.load_histories(store, [run.run_id], ["-loss"]))
    rows = read(comparison.export_bytes(frame, "csv"))
    got = dict(zip(rows[0], rows[1]))
    assert got["run"] == "'=HYPERLINK(\"http://evil\")" and got["metric"] == "'-loss" and got["value"] == "-1"
