"""Importers: real TensorBoard event files (written by torch's SummaryWriter) and Lightning CSVLogger folders
round-trip into the store; re-imports add nothing; hostile zips and damaged files are refused with nothing stored."""
import io
import math
import os
import struct
import time
import zipfile
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util
from torch.utils.tensorboard import SummaryWriter

from recipe_core.errors import BadInput
from recipe_core.tracking.importers import import_path, import_zip

METRICS_CSV = (  # as CSVLogger writes it: training rows every 10 steps, a validation row per epoch, gaps empty
    "epoch,step,train_loss,val_acc,val_loss\n"
    "0,9,0.9,,\n"
    "0,19,0.8,,\n"
    "0,19,,0.5,0.7\n"
    "1,29,0.6,,\n"
    "1,39,0.5,,\n"
    "1,39,,0.625,0.55\n"
)
CSV_MTIME = 1_700_000_000.0


def write_tb(folder: Path, n_steps: int = 50, val_every: int = 10, new_style: bool = False) -> dict:
    """Scalars as a training script logs them; returns {tag: (steps, values)} and the writing time span."""
    expected = {"loss/train": ([], []), "loss/val": ([], [])}
    start = time.time()
    writer = SummaryWriter(str(folder), max_queue=1000, flush_secs=3600)
    for step in range(n_steps):
        train = 1.0 / (step + 1)
        writer.add_scalar("loss/train", train, step, new_style=new_style)
        expected["loss/train"][0].append(step)
        expected["loss/train"][1].append(train)
        if step % val_every == 0:
            val = 2.0 / (step + 1) + 0.1
            writer.add_scalar("loss/val", val, step, new_style=new_style)
            expected["loss/val"][0].append(step)
            expected["loss/val"][1].append(val)
    writer.close()
    return {"series": expected, "start": start, "end": time.time()}


def write_lightning(version_dir: Path, hparams: str | None = "lr: 0.001\nbatch_size: 32\n", csv=METRICS_CSV):
    version_dir.mkdir(parents=True)
    (version_dir / "metrics.csv").write_text(csv)
    os.utime(version_dir / "metrics.csv", (CSV_MTIME, CSV_MTIME))
    if hparams is not None:
        (version_dir / "hparams.yaml").write_text(hparams)


def zip_folder(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def events_file(folder: Path) -> Path:
    (path,) = folder.glob("events.out.tfevents.*")
    return path


def history(store, run_id, key):
    return store.histories([run_id], key)[run_id]


# -----------------------------------------------------------------------------------------------------------
# TensorBoard


def test_tensorboard_runs_round_trip_every_point(store, tmp_path):
    root = tmp_path / "tb_logs"
    written = {name: write_tb(root / name) for name in ("run_a", "run_b")}

    imported = import_path(store, root)

    assert [r["name"] for r in imported] == ["tb_logs/run_a", "tb_logs/run_b"]
    for result, (name, w) in zip(imported, written.items()):
        assert result["source"] == "tensorboard" and result["already"] is False
        assert result["metrics"] == {"loss/train": 50, "loss/val": 5}
        for tag, (steps, values) in w["series"].items():
            h = history(store, result["run_id"], tag)
            assert h.step.tolist() == steps
            # the event files hold float32: compare with the values as they were written
            np.testing.assert_array_equal(h.value, np.asarray(values, np.float32).astype(np.float64))
            assert np.isnan(h.epoch).all()
            assert w["start"] - 1 <= h.wall_time.min() <= h.wall_time.max() <= w["end"] + 1
            assert np.all(np.diff(h.wall_time) >= 0)
        record = store.get_run(result["run_id"])
        assert (record.name, record.source, record.status, record.config) == (f"tb_logs/{name}", "tensorboard",
                                                                              "finished", {})
        assert record.metrics["loss/train"] == pytest.approx(1 / 50, rel=1e-6)  # the last value
        created = datetime.fromisoformat(record.created_at).timestamp()
        assert w["start"] - 2 <= created <= w["end"] + 1  # the first event's time, not the import's
    assert len(store.list_runs()) == 2


def test_tf2_style_tensor_scalars_and_hparams_yaml(store, tmp_path):
    run = tmp_path / "version_0"
    w = write_tb(run, n_steps=20, new_style=True)  # TF2 style: 0-d tensors with the scalars plugin
    writer = SummaryWriter(str(run / "more"))
    writer.add_text("notes", "a text summary is a string tensor, not a metric", 0)
    writer.close()
    (run / "hparams.yaml").write_text("lr: 0.01\nlayers: [64, 64]\n")

    imported = import_path(store, run)

    # version_0/more holds only a text summary (a string tensor): no scalar metrics, so it is not a run
    (result,) = imported
    assert result["name"] == "version_0"
    assert result["metrics"] == {"loss/train": 20, "loss/val": 2}
    h = history(store, result["run_id"], "loss/train")
    assert h.step.tolist() == w["series"]["loss/train"][0]
    np.testing.assert_array_equal(h.value, np.float32(w["series"]["loss/train"][1]).astype(np.float64))
    assert store.get_run(result["run_id"]).config == {"lr": 0.01, "layers": [64, 64]}


def test_a_single_events_file_is_one_run_named_after_its_folder(store, tmp_path):
    write_tb(tmp_path / "exp1", n_steps=5)
    (result,) = import_path(store, events_file(tmp_path / "exp1"))
    assert result["name"] == "exp1" and result["metrics"] == {"loss/train": 5, "loss/val": 1}
    # the same files through their folder are the same run
    (again,) = import_path(store, tmp_path / "exp1")
    assert (again["run_id"], again["already"]) == (result["run_id"], True)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "garbage"])
def test_a_corrupt_events_file_is_refused_and_nothing_is_stored(store, tmp_path, damage):
    root = tmp_path / "logs"
    write_tb(root / "good")
    write_tb(root / "bad")
    path = events_file(root / "bad")
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "flipped byte":
        data = data[:300] + bytes([data[300] ^ 0xFF]) + data[301:]
    else:
        data = os.urandom(2000)
    path.write_bytes(data)

    with pytest.raises(BadInput) as info:
        import_path(store, root)
    message = str(info.value)
    assert f"logs/bad/{path.name}" in message and "corrupt" in message and "\n" not in message
    assert store.list_runs() == []  # the good run waits too: nothing is half imported


def test_a_run_that_fails_while_writing_ends_failed_not_running(store, tmp_path, monkeypatch):
    write_tb(tmp_path / "run")
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise OSError("disk full")
        return type(store).log_arrays(store, *args, **kwargs)

    monkeypatch.setattr(store, "log_arrays", flaky)
    with pytest.raises(OSError, match="disk full"):
        import_path(store, tmp_path / "run")
    (record,) = store.list_runs()
    assert record.status == "failed" and "disk full" in record.reason


def _scalar(tag, step, value, wall):
    return event_pb2.Event(wall_time=wall, step=step,
                           summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]))


def _tensor(tag, step, wall, plugin=None, **tensor):
    """A TF2-style summary: a tensor, with its plugin's metadata when plugin is given (a tag's first event)."""
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_pb2.TensorProto(**tensor))
    if plugin:
        value.metadata.plugin_data.plugin_name = plugin
    return event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[value]))


def _start(step, wall):
    start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
    return event_pb2.Event(wall_time=wall, step=step, session_log=start)


def _write_restarted_run(folder: Path) -> None:
    """Two events files as TensorBoard's writer writes them (file version 2): a job logs to step 49, restarts at
    30 and logs to 69, restarts at 60 and logs to 79. Legacy and TF2 scalars, gaps, NaN and inf, text, histogram."""
    wall = 1_700_000_000.0
    for k, sessions in enumerate([[(0, 50)], [(30, 70), (60, 80)]]):  # (first step, end) of each session
        before = set(folder.iterdir()) if folder.exists() else set()
        writer = EventFileWriter(str(folder))
        for first, end in sessions:
            writer.add_event(_start(first, wall))
            for step in range(first, end):
                wall += 1.0
                writer.add_event(_scalar("loss/train", step, (k + 1) / (step + 1), wall))
                if step % 2 == 0:
                    acc = math.nan if step % 10 == 4 else math.inf if step == 8 else step / 100
                    writer.add_event(_scalar("acc", step, acc, wall + 0.5))
                if step % 10 == 0:
                    writer.add_event(_tensor("loss/val", step, wall, "scalars" if step == 0 else None, dtype=1,
                                             float_val=[2 / (step + 1)]))
                if step % 5 == 0:  # as TF2 writes them: the value's bytes in tensor_content
                    writer.add_event(_tensor("lr", step, wall, "scalars" if step == 0 else None, dtype=1,
                                             tensor_content=struct.pack("<f", 0.1 / (1 + step // 20))))
        writer.add_event(_tensor("notes", first, wall, "text", dtype=7, string_val=[b"a text summary"]))
        histo = summary_pb2.HistogramProto(min=0, max=1, num=2, sum=1, bucket_limit=[1], bucket=[2])
        writer.add_event(event_pb2.Event(wall_time=wall, step=first + 5, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="weights", histo=histo)])))
        writer.close()
        # name the files in writing order (the writer's names end in a per-process counter: 9 sorts after 10)
        (path,) = set(folder.iterdir()) - before
        path.rename(folder / f"events.out.tfevents.{1_700_000_000 + k}.host")


def _write_old_run(folder: Path) -> None:
    """A file without a version event (an old TensorFlow): a step going backwards purges the tags it carries."""
    folder.mkdir()
    events = [_scalar(tag, step, step / 10, 1000.0 + step) for step in range(30) for tag in ("a", "b")]
    events += [_scalar("a", step, -step / 10, 2000.0 + step) for step in range(10, 15)]  # a alone goes back
    events += [event_pb2.Event(wall_time=3000.0, step=5, log_message=event_pb2.LogMessage(message="hi")),
               _scalar("b", 6, 0.6, 3001.0),  # after the log message at step 5: no purge
               _tensor("", 3, 3002.0, dtype=7, string_val=[b"x"]),  # an empty tag purges every tag (>= 3)
               _scalar("a", 4, 0.4, 3003.0), _scalar("b", 4, 0.4, 3004.0)]
    with open(folder / "events.out.tfevents.1.host", "wb") as f:
        writer = RecordWriter(f)
        for e in events:
            writer.write(e.SerializeToString())


def _accumulator_series(folder: Path) -> dict:
    """{tag: [(step, value, wall_time)]} as TensorBoard's EventAccumulator reads the folder: its scalars, then its
    tensors of the scalars plugin (or none) that hold one number each."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    out = {tag: [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        arrays = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
        plugin = acc.summary_metadata[tag].plugin_data.plugin_name if tag in acc.summary_metadata else ""
        if plugin in ("scalars", "") and all(a.size == 1 and a.dtype.kind in "iuf" for a in arrays):
            out.setdefault(tag, []).extend((e.step, float(a), e.wall_time) for e, a in zip(events, arrays))
    return {tag: points for tag, points in out.items() if points}


def test_a_messy_log_imports_exactly_as_the_event_accumulator_reads_it(store, tmp_path):
    root = tmp_path / "logs"
    _write_restarted_run(root / "restarted")
    _write_old_run(root / "old")

    imported = import_path(store, root)

    for result in imported:
        expected = _accumulator_series(root / result["name"].split("/")[-1])
        assert result["metrics"] == {tag: len(points) for tag, points in expected.items()}
        for tag, points in expected.items():
            step, value, wall = (np.array(column) for column in zip(*points))
            order = np.argsort(step, kind="stable")  # the store keeps a series by step, ties in logged order
            h = history(store, result["run_id"], tag)
            assert h.step.tolist() == step[order].tolist()
            np.testing.assert_array_equal(h.value, np.where(np.isfinite(value), value, np.nan)[order])
            np.testing.assert_array_equal(h.wall_time, wall[order])
    # what the accumulator does, spelled out: restarts orphan the legacy scalars after them, never the tensors
    old, restarted = (r["run_id"] for r in imported)
    h = history(store, restarted, "loss/train")
    assert h.step.tolist() == list(range(80)) and h.value[45] == np.float32(2 / 46)
    assert history(store, restarted, "loss/val").step.tolist() == [0, 10, 20, 30, 30, 40, 40, 50, 60, 60, 70]
    assert history(store, old, "a").step.tolist() == [0, 1, 2, 4] and history(store, old, "b").step.tolist() == [
        0, 1, 2, 4]


def test_random_restarts_and_steps_going_back_match_the_event_accumulator(store, tmp_path):
    # Random logs of both kinds (with and without a version-2 file event), several values per event, restarts,
    # steps going back, other events between: what is purged must be exactly what the accumulator purges.
    rng = np.random.default_rng(0)
    for i in range(40):
        events = [event_pb2.Event(wall_time=0.0, file_version="brain.Event:2")] if i % 2 else []
        step = 0
        for n in range(300):
            step, kind = step + int(rng.integers(0, 3)), rng.random()
            if kind < 0.06:  # a restart, or a step going back
                step = max(0, step - int(rng.integers(1, 40)))
            if kind < 0.03:
                events.append(_start(step, float(n)))
            elif kind < 0.1:
                events.append(event_pb2.Event(wall_time=float(n), step=step, log_message=event_pb2.LogMessage()))
            else:
                tags = rng.choice(["a", "b", "c", ""] if kind < 0.12 else ["a", "b", "c"], int(rng.integers(1, 3)))
                values = [summary_pb2.Summary.Value(tag=t, simple_value=float(n)) if t else
                          summary_pb2.Summary.Value(tensor=tensor_pb2.TensorProto(dtype=7, string_val=[b"x"]))
                          for t in tags]
                events.append(event_pb2.Event(wall_time=float(n), step=step, summary=summary_pb2.Summary(value=values)))
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        with open(folder / "events.out.tfevents.1.host", "wb") as f:
            writer = RecordWriter(f)
            for e in events:
                writer.write(e.SerializeToString())
        expected = _accumulator_series(folder)
        if not expected:  # every point purged
            with pytest.raises(BadInput, match="hold no scalar metrics"):
                import_path(store, folder)
            continue
        (result,) = import_path(store, folder)
        assert result["metrics"] == {tag: len(points) for tag, points in expected.items()}, i
        for tag, points in expected.items():
            step, value = np.array([p[0] for p in points]), np.array([p[1] for p in points])
            order = np.argsort(step, kind="stable")
            h = history(store, result["run_id"], tag)
            assert (h.step.tolist(), h.value.tolist()) == (step[order].tolist(), value[order].tolist()), i


def test_100k_steps_import_in_seconds(store, tmp_path):
    n = 100_000
    t0 = time.perf_counter()
    write_tb(tmp_path / "long", n_steps=n)
    t1 = time.perf_counter()
    (result,) = import_path(store, tmp_path / "long")
    t2 = time.perf_counter()
    print(f"\nSummaryWriter wrote {n} + {n // 10} scalars in {t1 - t0:.1f} s; import took {t2 - t1:.2f} s")
    assert result["metrics"] == {"loss/train": n, "loss/val": n // 10}
    h = history(store, result["run_id"], "loss/train")
    assert h.step.tolist() == list(range(n))
    assert t2 - t1 < 30


# -----------------------------------------------------------------------------------------------------------
# Lightning CSVLogger


def test_lightning_layout_with_gaps_and_hparams(store, tmp_path):
    root = tmp_path / "lightning_logs"
    write_lightning(root / "version_0")
    write_lightning(root / "version_1", hparams=None,
                    csv="created_at,epoch,step,train_loss\n2024-01-01,0,0,1.5\n2024-01-01,0,1,1.25\n")

    imported = import_path(store, root)

    assert [(r["name"], r["source"]) for r in imported] == [("lightning_logs/version_0", "lightning"),
                                                           ("lightning_logs/version_1", "lightning")]
    v0, v1 = imported
    assert v0["metrics"] == {"train_loss": 4, "val_acc": 2, "val_loss": 2}
    h = history(store, v0["run_id"], "train_loss")
    assert h.step.tolist() == [9, 19, 29, 39]
    assert h.value.tolist() == [0.9, 0.8, 0.6, 0.5]
    assert h.epoch.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert h.wall_time.tolist() == [CSV_MTIME] * 4  # the layout has no times: the file's mtime
    h = history(store, v0["run_id"], "val_acc")
    assert (h.step.tolist(), h.value.tolist(), h.epoch.tolist()) == ([19, 39], [0.5, 0.625], [0.0, 1.0])
    record = store.get_run(v0["run_id"])
    assert record.config == {"lr": 0.001, "batch_size": 32}
    assert record.status == "finished" and record.metrics["val_loss"] == 0.55
    assert v1["metrics"] == {"train_loss": 2}  # created_at is not a metric
    assert store.get_run(v1["run_id"]).config == {}


@pytest.mark.parametrize("hparams", [
    "args: !!python/object:argparse.Namespace\n  lr: 0.1\n",  # what saving a Namespace writes; safe_load refuses
    "- just\n- a list\n",  # not a mapping
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",  # aliases: tiny YAML, 59k values once written out
    "key: [unclosed\n",
])
def test_unusable_hparams_give_an_empty_config_and_the_run_still_imports(store, tmp_path, hparams):
    write_lightning(tmp_path / "lightning_logs" / "version_0", hparams=hparams)
    (result,) = import_path(store, tmp_path / "lightning_logs")
    assert result["metrics"] == {"train_loss": 4, "val_acc": 2, "val_loss": 2}
    assert store.get_run(result["run_id"]).config == {}


@pytest.mark.parametrize("csv, words", [
    ("epoch,step,loss\n0,1,0.5\n0,2,oops\n", "line 3"),
    ("epoch,step,loss\n0,1,0.5\n0,2\n", "line 3 has 2 cells"),
    ("epoch,loss\n0,0.5\n", "no step column"),
    ("epoch,step,loss\n0,,0.5\n", "no step"),
])
def test_a_malformed_metrics_csv_is_refused_and_nothing_is_stored(store, tmp_path, csv, words):
    write_lightning(tmp_path / "logs" / "good")
    write_lightning(tmp_path / "logs" / "bad", csv=csv)
    with pytest.raises(BadInput, match=words) as info:
        import_path(store, tmp_path / "logs")
    assert "logs/bad/metrics.csv" in str(info.value)
    assert store.list_runs() == []


# -----------------------------------------------------------------------------------------------------------
# idempotence, empty input


def test_importing_twice_gives_the_same_runs_and_no_extra_points(store, tmp_path):
    write_tb(tmp_path / "logs" / "tb")
    write_lightning(tmp_path / "logs" / "lightning_logs" / "version_0")

    first = import_path(store, tmp_path / "logs")
    points = store.metric_summaries()
    second = import_path(store, tmp_path / "logs")

    assert [r["already"] for r in first] == [False, False]
    assert [r["already"] for r in second] == [True, True]
    assert [(r["run_id"], r["name"], r["metrics"]) for r in second] == \
           [(r["run_id"], r["name"], r["metrics"]) for r in first]
    assert store.metric_summaries() == points
    assert len(store.list_runs()) == 2
    # the same run found from another root (a different name) is still recognised by its bytes
    (again,) = import_path(store, tmp_path / "logs" / "lightning_logs")
    assert again["already"] and again["run_id"] == first[0]["run_id"]


def test_empty_or_missing_folder_is_refused(store, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no runs here")
    with pytest.raises(BadInput, match="no TensorBoard event files or Lightning metrics.csv found under empty"):
        import_path(store, tmp_path / "empty")
    with pytest.raises(BadInput, match="no such file or folder"):
        import_path(store, tmp_path / "missing")
    assert store.list_runs() == []


# -----------------------------------------------------------------------------------------------------------
# zip uploads


def test_zip_upload_names_runs_by_their_paths_inside_the_zip(store, tmp_path):
    content = tmp_path / "content"
    w = write_tb(content / "tb_logs" / "run_a")
    write_lightning(content / "lightning_logs" / "version_0")
    # what macOS adds to a zip: resource forks named "._<file>", in __MACOSX/ or next to the file
    fork = content / "tb_logs" / "run_a" / f"._{events_file(content / 'tb_logs' / 'run_a').name}"
    fork.write_bytes(b"\x00\x05\x16\x07" + bytes(100))
    (content / "__MACOSX" / "lightning_logs" / "version_0").mkdir(parents=True)
    (content / "__MACOSX" / "lightning_logs" / "version_0" / "metrics.csv").write_bytes(bytes(100))

    imported = import_zip(store, zip_folder(content))

    assert [(r["name"], r["source"], r["already"]) for r in imported] == [
        ("lightning_logs/version_0", "lightning", False), ("tb_logs/run_a", "tensorboard", False)]
    lightning, tb = imported
    assert store.get_run(lightning["run_id"]).config == {"lr": 0.001, "batch_size": 32}
    assert history(store, lightning["run_id"], "train_loss").value.tolist() == [0.9, 0.8, 0.6, 0.5]
    h = history(store, tb["run_id"], "loss/val")
    assert h.step.tolist() == w["series"]["loss/val"][0]
    # the same folders imported from disk are the runs already there
    again = import_path(store, content)
    assert [(r["run_id"], r["already"]) for r in again] == [(lightning["run_id"], True), (tb["run_id"], True)]
    assert len(store.list_runs()) == 2


def test_zip_with_files_at_its_top_level_uses_the_given_name(store, tmp_path):
    write_lightning(tmp_path / "v0")
    (result,) = import_zip(store, zip_folder(tmp_path / "v0"), name="my-run")
    assert result["name"] == "my-run"


def _zip(entries, method=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip holding a valid Lightning run plus the given (ZipInfo or name, data) entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("lightning_logs/version_0/metrics.csv", METRICS_CSV)
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _symlink_entry():
    info = zipfile.ZipInfo("lightning_logs/version_1/metrics.csv")
    info.external_attr = 0o120777 << 16
    return info


def _encrypted(data: bytes) -> bytes:
    # zipfile cannot write encrypted entries: set the "encrypted" flag bit of the first entry's headers
    buf = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        buf[buf.find(signature) + offset] |= 1
    return bytes(buf)


@lru_cache(maxsize=1)
def _bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("lightning_logs/version_0/metrics.csv", METRICS_CSV)
        with zf.open("lightning_logs/version_0/padding.bin", "w") as out:
            zeros = bytes(1 << 20)
            for _ in range(600):
                out.write(zeros)
    return buf.getvalue()


def _lying_sizes() -> bytes:
    # declares 100 bytes where 2 MB are stored: the reader must not trust the declared size
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("lightning_logs/version_0/metrics.csv", METRICS_CSV)
        zf.writestr("lightning_logs/version_1/metrics.csv", b"0" * (2 << 20))
        zf.filelist[-1].file_size = 100
    return buf.getvalue()


@pytest.mark.parametrize("make, kwargs, words", [
    (lambda: _zip([("../evil/metrics.csv", METRICS_CSV)]), {}, r"outside the archive"),
    (lambda: _zip([("lightning_logs/../../evil.txt", "x")]), {}, r"outside the archive"),
    (lambda: _zip([("/etc/cron.d/evil", "x")]), {}, r"absolute path"),
    (lambda: _zip([("C:\\Windows\\evil", "x")]), {}, r"absolute path"),
    (lambda: _zip([(_symlink_entry(), "/etc/passwd")]), {}, r"symbolic link"),
    (lambda: _encrypted(_zip([])), {}, r"encrypted"),
    (lambda: _zip([("x.csv", "a")], method=zipfile.ZIP_BZIP2), {}, r"compression"),
    (lambda: _zip([(f"f{i}.txt", "x") for i in range(5)]), {"max_files": 5}, r"more than the limit of 5"),
    (_bomb, {"max_bytes": 1 << 20}, r"compression bomb"),
    (_lying_sizes, {}, r"corrupt"),
    (lambda: METRICS_CSV.encode(), {}, r"not a zip archive"),
    (lambda: b"\x89PNG\r\n\x1a\n" + bytes(100), {}, r"not a zip archive"),
    (lambda: _zip([])[:200], {}, r"corrupt or truncated"),
])
def test_hostile_zips_are_refused_and_nothing_is_stored(store, make, kwargs, words):
    data = make()
    with pytest.raises(BadInput, match=words) as info:
        import_zip(store, data, **kwargs)
    assert "\n" not in str(info.value)
    assert store.list_runs() == []


def test_bomb_is_refused_before_inflating(store):
    data = _bomb()
    assert len(data) < 2 << 20  # 600 MB of zeros in under 2 MB
    t0 = time.perf_counter()
    with pytest.raises(BadInput, match="compression bomb"):
        import_zip(store, data, max_bytes=100 << 20)
    assert time.perf_counter() - t0 < 5
    assert store.list_runs() == []


def test_zip_without_runs_is_refused(store):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(BadInput, match="no TensorBoard event files or Lightning metrics.csv found under the zip"):
        import_zip(store, buf.getvalue())
