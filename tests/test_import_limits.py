"""Hostile logs: an import streams in bounded memory, or is refused early in one line that names its cap.

The big cases import in a child process and read its peak RSS (VmHWM) and time; the figures before this reader
(TensorBoard's EventAccumulator, a value and a flag per CSV cell) are in the comments."""
import io
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from recipe_core.errors import BadInput
from recipe_core.tracking.importers import import_path, import_zip
from recipe_core.tracking.importers.series import MAX_SERIES
from recipe_core.tracking.importers.tensorboard import masked_crc32c

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20

# The import in a child process: it prints its outcome, peak RSS and time. Its address space is capped so that the
# old reader (5.1 GB for a 600 MB csv) ends in a MemoryError instead of taking the machine's memory.
CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from recipe_core.config import load_settings
from recipe_core.errors import BadInput
from recipe_core.tracking.importers import import_path, import_zip
from recipe_core.tracking.store import Store

store = Store(load_settings().store_url)
path = sys.argv[1]
t0 = time.perf_counter()
try:
    if path.endswith(".zip"):
        with open(path, "rb") as f:
            runs = import_zip(store, f.read(), max_bytes=1 << 30)  # the Compare page's cap (RECIPE_MAX_UPLOAD_MB)
    else:
        runs = import_path(store, path)
    outcome = {"runs": [{"name": r["name"], "metrics": r["metrics"]} for r in runs]}
except (BadInput, MemoryError) as e:
    outcome = {"error": f"{type(e).__name__}: {e}"}
outcome["seconds"] = time.perf_counter() - t0
status = open("/proc/self/status").read()
outcome["peak_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps(outcome))
"""


def import_in_child(path: Path, home: Path, **env) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECIPE_")}
    environ.update(RECIPE_HOME=str(home), **env)
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=REPO, env=environ, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{path.name}: peak {outcome['peak_mb']:.0f} MB, {outcome['seconds']:.1f} s, "
          f"{str(outcome.get('error') or outcome['runs'])[:200]}")
    return outcome


# -----------------------------------------------------------------------------------------------------------
# events files, written fast


def write_events(path: Path, payloads: list[bytes]) -> None:
    """Serialized events framed as TensorBoard's RecordWriter frames them (length, its masked CRC-32C, payload, its
    CRC), the CRCs of all same-size records at once: RecordWriter computes each in pure Python, 82 s for 1M
    events. The test below checks the bytes are RecordWriter's."""
    sizes = np.fromiter(map(len, payloads), np.int64, len(payloads))
    body = np.frombuffer(b"".join(payloads), np.uint8)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    heads = np.zeros((len(sizes), 12), np.uint8)
    heads[:, :8] = np.frombuffer(sizes.astype("<u8").tobytes(), np.uint8).reshape(-1, 8)
    heads[:, 8:] = _crc_bytes(masked_crc32c(heads[:, :8].ravel(), np.arange(len(sizes)) * 8, 8))
    tails = np.zeros((len(sizes), 4), np.uint8)
    for size in np.unique(sizes).tolist():
        members = np.flatnonzero(sizes == size)
        tails[members] = _crc_bytes(masked_crc32c(body, starts[members], size))
    heads, tails = heads.tobytes(), tails.tobytes()
    pieces = [b""] * (3 * len(payloads))
    pieces[0::3] = [heads[i:i + 12] for i in range(0, len(heads), 12)]
    pieces[1::3] = payloads
    pieces[2::3] = [tails[i:i + 4] for i in range(0, len(tails), 4)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(pieces))


def _crc_bytes(crc: np.ndarray) -> np.ndarray:
    return np.frombuffer(crc.astype("<u4").tobytes(), np.uint8).reshape(-1, 4)


def file_version(wall: float) -> bytes:
    return event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString()


def scalar_events(n: int, tag: str = "loss/train", first_step: int = 0, wall: float = 1.7e9,
                  new_style: bool = False) -> list[bytes]:
    """n scalar events as add_scalar writes them, one value per event at steps first_step, first_step + 1...:
    legacy simple_values, or (new_style) TF2's 0-d tensors, the scalars plugin named on the first."""
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_pb2.TensorProto(dtype=1, float_val=[0])) \
        if new_style else summary_pb2.Summary.Value(tag=tag, simple_value=0)
    event = event_pb2.Event(summary=summary_pb2.Summary(value=[value]))
    value, out = event.summary.value[0], []
    for i in range(n):
        event.step, event.wall_time = first_step + i, wall + i * 1e-3
        if new_style:
            value.tensor.float_val[0] = 1.0 / (i + 1)
            if i == 0:
                value.metadata.plugin_data.plugin_name = "scalars"
            elif i == 1:
                value.ClearField("metadata")
        else:
            value.simple_value = 1.0 / (i + 1)
        out.append(event.SerializeToString())
    return out


def test_write_events_frames_as_tensorboard_does(tmp_path):
    # steps from 0 to 2**40: payloads of many lengths, a few records of some of them
    payloads = [file_version(1.7e9)] + [e for k in range(0, 41, 4) for e in scalar_events(40, first_step=2 ** k)]
    payloads += [os.urandom(n) for n in (0, 1, 3, 4, 5, 300, 5000)]
    buf = io.BytesIO()
    writer = RecordWriter(buf)
    for p in payloads:
        writer.write(p)
    write_events(tmp_path / "events.out.tfevents.1", payloads)
    assert (tmp_path / "events.out.tfevents.1").read_bytes() == buf.getvalue()


# -----------------------------------------------------------------------------------------------------------
# TensorBoard


@pytest.mark.parametrize("new_style", [False, True], ids=["legacy", "tf2"])
def test_a_million_scalar_events_stream_in_bounded_memory(tmp_path, new_style):
    # Before: EventAccumulator held every event as a Python object: 315 MB peak and 50 s for legacy scalars,
    # 1.9 GB and 46 s for TF2 tensors (it keeps each TensorProto).
    events = scalar_events(1_000_000, new_style=new_style)
    write_events(tmp_path / "tb" / "events.out.tfevents.1.host", [file_version(1.7e9)] + events)

    outcome = import_in_child(tmp_path / "tb", tmp_path / "home")

    assert outcome["runs"] == [{"name": "tb", "metrics": {"loss/train": 1_000_000}}]
    assert outcome["peak_mb"] < 250
    assert outcome["seconds"] < 30


def test_tensorboard_points_past_the_cap_are_refused_while_reading(store, tmp_path, monkeypatch):
    write_events(tmp_path / "tb" / "events.out.tfevents.1", [file_version(1.7e9)] + scalar_events(200_000))
    monkeypatch.setenv("RECIPE_MAX_IMPORT_POINTS", "50000")
    with pytest.raises(BadInput, match=r"tb/events.out.tfevents.1 brings the import past 50,000 metric points, "
                                       r"the limit RECIPE_MAX_IMPORT_POINTS sets") as info:
        import_path(store, tmp_path / "tb")
    assert "\n" not in str(info.value)
    assert store.list_runs() == []
    # the keyword wins over the setting, and a cap the import fits in lets it through
    (result,) = import_path(store, tmp_path / "tb", max_points=200_000)
    assert result["metrics"] == {"loss/train": 200_000}


def test_more_tags_than_the_series_cap_are_refused(store, tmp_path):
    events = [e for i in range(MAX_SERIES + 1) for e in scalar_events(1, tag=f"m{i}", first_step=i)]
    write_events(tmp_path / "tb" / "events.out.tfevents.1", events)
    with pytest.raises(BadInput, match=f"has more than {MAX_SERIES:,} tags, the limit of metric series per run"):
        import_path(store, tmp_path / "tb")
    assert store.list_runs() == []


def test_an_event_declaring_a_huge_length_is_refused_before_it_is_read(store, tmp_path):
    # A length whose own CRC is right, then 80 MB: TensorBoard's reader reads all of it (three copies) and spends
    # ~30 s on its pure-Python CRC before finding the payload's wrong.
    length = struct.pack("<Q", 80 * MB)
    crc = int(masked_crc32c(np.frombuffer(length, np.uint8), np.zeros(1, np.int64), 8)[0])
    path = tmp_path / "tb" / "events.out.tfevents.1"
    write_events(path, [file_version(1.7e9)])
    with open(path, "ab") as f:
        f.write(length + struct.pack("<I", crc))
        f.truncate(f.tell() + 80 * MB + 4)
    t0 = time.perf_counter()
    with pytest.raises(BadInput, match=r"tb/events.out.tfevents.1: record 2 declares 80 MB, more than the limit "
                                       r"of 64 MB for one event"):
        import_path(store, tmp_path / "tb")
    assert time.perf_counter() - t0 < 5


def test_many_restarts_cost_no_more_than_their_points(store, tmp_path):
    # A job that restarts at step 20,000 again and again, logging one point each time: every restart orphans the
    # point before it. EventAccumulator scans all the points held on each restart (20k x 20k, over a minute).
    start = event_pb2.Event(step=20_000, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
    events = [file_version(1.7e9)] + scalar_events(20_000)
    for i in range(20_000):
        start.wall_time = 1.8e9 + i
        events += [start.SerializeToString(), *scalar_events(1, first_step=20_000, wall=1.8e9 + i + 0.5)]
    write_events(tmp_path / "tb" / "events.out.tfevents.1", events)

    t0 = time.perf_counter()
    (result,) = import_path(store, tmp_path / "tb")
    assert time.perf_counter() - t0 < 10
    h = store.histories([result["run_id"]], "loss/train")[result["run_id"]]
    assert h.step.tolist() == list(range(20_001))  # one point at step 20,000: the last job's
    assert h.wall_time[-1] == 1.8e9 + 19_999.5


@pytest.mark.parametrize("tag, words", [
    ("loss\x00train", "contains a NUL character"),
    ("x" * 201, "empty or too long metric name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' (1 to 200 characters)"),
    ("", "empty or too long metric name ''"),
])
def test_a_tag_the_store_cannot_hold_is_refused_naming_the_file(store, tmp_path, tag, words):
    write_events(tmp_path / "tb" / "events.out.tfevents.1", [file_version(1.7e9)] + scalar_events(3, tag=tag))
    with pytest.raises(BadInput, match="tb/events.out.tfevents.1") as info:
        import_path(store, tmp_path / "tb")
    assert words in str(info.value) and "\n" not in str(info.value)
    assert store.list_runs() == []


# -----------------------------------------------------------------------------------------------------------
# Lightning CSVLogger


def zip_sparse_csv(path: Path, mb: int, columns: int) -> int:
    """A zip holding lightning_logs/version_0/metrics.csv of about mb MB: rows of `columns` metric columns with
    one value each, the rest empty (a wide log of rarely logged metrics). Returns its number of rows."""
    header = "epoch,step," + ",".join(f"metric_{j}" for j in range(columns)) + "\n"
    rows = (mb * MB) // (columns + 12)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("lightning_logs/version_0/metrics.csv", "w") as out:
            out.write(header.encode())
            for start in range(0, rows, 1000):
                out.write("".join(f"0,{i}," + "," * (i % columns) + "0.5" + "," * (columns - 1 - i % columns)
                                  + "\n" for i in range(start, min(start + 1000, rows))).encode())
    return rows


def test_a_small_zip_of_a_huge_sparse_csv_is_refused_at_the_point_cap(tmp_path):
    # Before: the reader kept a value and a flag per cell, 2.7 GB for these 150k rows x 2000 columns: a
    # MemoryError at the child's 3 GB after 106 s (158 s without the lower cap, which it ignored).
    zip_sparse_csv(tmp_path / "logs.zip", mb=300, columns=2000)
    assert (tmp_path / "logs.zip").stat().st_size < 4 * MB

    outcome = import_in_child(tmp_path / "logs.zip", tmp_path / "home", RECIPE_MAX_IMPORT_POINTS="20000")

    assert outcome["error"] == ("BadInput: lightning_logs/version_0/metrics.csv brings the import past 20,000 "
                                "metric points, the limit RECIPE_MAX_IMPORT_POINTS sets; import fewer runs at "
                                "once, or raise the limit")
    assert outcome["peak_mb"] < 200
    assert outcome["seconds"] < 15


def test_a_big_sparse_csv_under_the_default_cap_imports_in_bounded_memory(tmp_path):
    # Before: 609 MB and 19 s for these 100k rows x 500 columns (1.1 GB and 53 s for twice as many rows).
    rows = zip_sparse_csv(tmp_path / "logs.zip", mb=50, columns=500)

    outcome = import_in_child(tmp_path / "logs.zip", tmp_path / "home")

    (run,) = outcome["runs"]
    assert sum(run["metrics"].values()) == rows and len(run["metrics"]) == 500
    assert outcome["peak_mb"] < 200
    assert outcome["seconds"] < 30


def test_a_point_costs_under_40_bytes_so_the_default_cap_stays_under_1_gb(tmp_path):
    # Dense files of 1M and 2M points: the difference in peak RSS is what a million points cost, all of the
    # reading and writing included; 20M (the default RECIPE_MAX_IMPORT_POINTS) then fit well within 1 GB.
    # Measured once at 20M points (100 columns x 200k rows): 582 MB, 14 s.
    peaks = []
    for millions in (1, 2):
        folder = tmp_path / f"dense{millions}" / "version_0"
        folder.mkdir(parents=True)
        row = ",".join(["0.25"] * 100)
        with open(folder / "metrics.csv", "w") as f:
            f.write("epoch,step," + ",".join(f"m{j}" for j in range(100)) + "\n")
            f.writelines(f"0,{i},{row}\n" for i in range(millions * 10_000))
        outcome = import_in_child(folder.parent, tmp_path / f"home{millions}")
        assert sum(outcome["runs"][0]["metrics"].values()) == millions * 1_000_000
        peaks.append(outcome["peak_mb"])
    per_point = (peaks[1] - peaks[0]) * MB / 1_000_000
    print(f"{per_point:.1f} bytes a point; 20M points: {peaks[0] + per_point * 19e6 / MB:.0f} MB")
    assert per_point < 40
    assert peaks[0] + per_point * 19_000_000 / MB < 1024


def test_a_csv_with_100k_columns_is_refused_at_its_header(store, tmp_path):
    folder = tmp_path / "wide" / "version_0"
    folder.mkdir(parents=True)
    cells = "," * 99_999
    (folder / "metrics.csv").write_text("epoch,step," + ",".join(f"m{j}" for j in range(100_000)) + "\n"
                                        + "".join(f"0,{i},0.5{cells}\n" for i in range(100)))
    with pytest.raises(BadInput, match=r"wide/version_0/metrics.csv has 100,000 metric columns, more than the "
                                       r"limit of 10,000 metric series per run"):
        import_path(store, tmp_path / "wide")
    assert store.list_runs() == []


def test_a_csv_line_longer_than_the_limit_is_refused_before_it_is_split(store, tmp_path):
    folder = tmp_path / "long" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("epoch,step,loss\n0,1,0.5\n0,2,0.5" + "," * (50 * MB) + "\n")
    with pytest.raises(BadInput, match=r"long/version_0/metrics.csv line 3 is longer than 4,194,304 characters"):
        import_path(store, tmp_path / "long")
    assert store.list_runs() == []


@pytest.mark.parametrize("header, words", [
    ("epoch,step,loss\x00", "the metric name 'loss?' contains a NUL character"),
    ("epoch,step," + "x" * 201, "empty or too long metric name"),
    ("epoch,step,,loss", "empty or too long metric name ''"),
])
def test_a_column_name_the_store_cannot_hold_is_refused(store, tmp_path, header, words):
    folder = tmp_path / "bad" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(header + "\n" + "0,1" + ",0.5" * (header.count(",") - 1) + "\n")
    with pytest.raises(BadInput, match="bad/version_0/metrics.csv") as info:
        import_path(store, tmp_path / "bad")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_the_cap_counts_every_run_of_the_import_and_nothing_is_stored(store, tmp_path):
    csv = "epoch,step,loss\n" + "".join(f"0,{i},0.5\n" for i in range(600))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/version_0/metrics.csv", csv)
        zf.writestr("b/version_0/metrics.csv", csv.replace("0.5", "0.25"))
    with pytest.raises(BadInput, match="b/version_0/metrics.csv brings the import past 1,000 metric points"):
        import_zip(store, buf.getvalue(), max_points=1000)
    assert store.list_runs() == []
    assert len(import_zip(store, buf.getvalue(), max_points=1200)) == 2
