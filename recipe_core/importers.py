"""Importers: TensorBoard event folders and PyTorch Lightning CSVLogger folders become runs in the store.

Every file is read and checked before the first run is written, so a bad file leaves nothing behind; a zip
upload is checked entry by entry before anything is extracted. Importing the same files again adds nothing.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
import time
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from recipe_core.errors import BadInput, NotFound
from recipe_core.jsonsafe import plain
from recipe_core.store import Store
from recipe_core.tracking import MAX_KEY, start_run

MAX_ZIP_BYTES = 500 << 20  # uncompressed size of a zip upload, declared and actually extracted
MAX_ZIP_FILES = 10_000
CHUNK = 1 << 20  # bytes per read when hashing and extracting
MAX_HPARAMS_BYTES = 1 << 20  # a bigger hparams.yaml is ignored (config {}): it is a config, not data
MAX_CONFIG_NODES = 20_000  # YAML aliases let a small file expand enormously once saved as JSON
MAX_CONFIG_DEPTH = 50
NOT_METRICS = ("epoch", "step", "created_at", "time")  # Lightning columns that are not metric series
SKIP_DIRS = ("__MACOSX",)  # macOS zips mirror every file there as "._name" resource forks
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # bzip2/lzma can inflate unboundedly in one read


@dataclass
class _Run:
    name: str
    source: str  # "tensorboard" or "lightning"
    files: list[Path]  # the data files: event files (in the order TensorBoard reads them), or one metrics.csv
    labels: dict  # path -> how messages name it (relative to the import, never a temp folder)
    hparams: Path | None = None
    run_id: str = ""


# -----------------------------------------------------------------------------------------------------------
# public API


def import_path(store: Store, path, author: str | None = None) -> list[dict]:
    """Import every run under a folder (or one events file / metrics.csv); returns one dict per run, by name.

    A folder holding TensorBoard event files is one run, and so is a folder holding a Lightning metrics.csv;
    runs are named by their folder relative to the import root, prefixed by the root's own name.
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no such file or folder: {_one_line(str(path))}")
    path = path.resolve()
    return _import(store, path, prefix=path.parent.name if path.is_file() else path.name, author=author,
                   where=_one_line(path.name or str(path)))


def import_zip(store: Store, data, author: str | None = None, max_bytes: int = MAX_ZIP_BYTES,
               max_files: int = MAX_ZIP_FILES, *, name: str = "upload") -> list[dict]:
    """Import a zip upload (hostile input): runs are named by their paths inside the zip.

    name names a run whose files sit at the zip's top level. Nothing is extracted before every entry passed
    the checks, and the extracted files live in a temporary folder that is removed afterwards.
    """
    stream = io.BytesIO(bytes(data)) if isinstance(data, (bytes, bytearray, memoryview)) else data
    stream.seek(0)
    if stream.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise BadInput("the upload is not a zip archive")
    stream.seek(0)
    try:
        zf = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise BadInput("the zip archive is corrupt or truncated") from None
    with zf, tempfile.TemporaryDirectory(prefix="recipe-import-") as tmp:
        entries = _checked_entries(zf, max_bytes, max_files)
        _extract(zf, entries, Path(tmp), max_bytes)
        return _import(store, Path(tmp), prefix="", author=author, where="the zip archive",
                       fallback=_one_line(name)[:200] or "upload")


# -----------------------------------------------------------------------------------------------------------
# finding, checking and writing runs


def _import(store: Store, root: Path, prefix: str, author: str | None, where: str,
            fallback: str = "import") -> list[dict]:
    runs = _find_runs(root, prefix, fallback)
    if not runs:
        raise BadInput(f"no TensorBoard event files or Lightning metrics.csv found under {where}")

    # Read and check every new run completely before writing the first one: a bad file anywhere leaves the
    # store as it was. What is held meanwhile is compact arrays (24-32 bytes a point), not events or text.
    results, todo, copies, seen = {}, [], [], set()
    for run in runs:
        run.run_id = _run_id(run)
        if run.run_id in seen:  # a byte-identical copy of a run found earlier in this import
            copies.append(run)
            continue
        seen.add(run.run_id)
        if _exists(store, run.run_id):
            results[(run.name, run.source)] = _already(store, run)
            continue
        series, first_time = _read_tensorboard(run) if run.source == "tensorboard" else _read_lightning(run)
        if series:  # none: e.g. a profiler's placeholder events file, or a metrics.csv with a header only
            todo.append((run, series, first_time, _load_config(run.hparams)))

    while todo:
        run, series, first_time, config = todo.pop(0)  # dropped once written
        key = (run.name, run.source)
        try:
            record = start_run(run.name, config, source=run.source, created_at=_iso(first_time),
                               run_id=run.run_id, author=author, store_url=store.url)
        except Exception:
            if _exists(store, run.run_id):  # another import of the same files won the race
                results[key] = _already(store, run)
                continue
            raise
        try:
            counts = {k: store.log_arrays(run.run_id, k, *arrays) for k, arrays in series.items()}
        except BaseException as e:
            record.finish("failed", f"import stopped: {type(e).__name__}: {e}")
            raise
        record.finish()
        results[key] = {"run_id": run.run_id, "name": run.name, "source": run.source, "metrics": counts,
                        "already": False}
    for run in copies:
        if _exists(store, run.run_id):
            results[(run.name, run.source)] = _already(store, run)
    if not results:
        raise BadInput(f"the TensorBoard event files or Lightning metrics.csv under {where} hold no scalar metrics")
    return [results[k] for k in sorted(results)]


def _find_runs(root: Path, prefix: str, fallback: str) -> list[_Run]:
    def name_of(folder: Path, base: Path) -> str:
        rel = folder.relative_to(base).as_posix()
        return "/".join(p for p in (prefix, "" if rel == "." else rel) if p) or fallback

    def label(f: Path, base: Path) -> str:
        return _one_line("/".join(p for p in (prefix, f.relative_to(base).as_posix()) if p))

    if root.is_file():  # one events file or metrics.csv: its folder's hparams.yaml still counts
        base = root.parent
        hparams = base / "hparams.yaml"
        hparams = hparams if hparams.is_file() else None
        name = prefix or fallback
        if root.name == "metrics.csv":
            return [_Run(name, "lightning", [root], {root: label(root, base)}, hparams)]
        if _is_events_file(root.name):
            return [_Run(name, "tensorboard", [root], {root: label(root, base)}, hparams)]
        raise BadInput(f"{_one_line(root.name)} is neither a TensorBoard events file nor a Lightning metrics.csv")

    runs = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not followed (no cycles)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        folder = Path(dirpath)
        name = name_of(folder, root)
        events = sorted(folder / n for n in filenames if _is_events_file(n) and (folder / n).is_file())
        hparams = folder / "hparams.yaml" if "hparams.yaml" in filenames else None
        hparams = hparams if hparams is not None and hparams.is_file() else None
        labels = {f: label(f, root) for f in events}
        if events:
            runs.append(_Run(name, "tensorboard", events, labels, hparams))
        metrics = folder / "metrics.csv"
        if "metrics.csv" in filenames and metrics.is_file():
            runs.append(_Run(name, "lightning", [metrics], {metrics: label(metrics, root)}, hparams))
    return runs


def _is_events_file(name: str) -> bool:
    # the names TensorFlow, torch and tensorboardX give them (not TensorBoard's looser "tfevents" anywhere,
    # which also matches macOS "._events.out.tfevents..." resource forks)
    return name.startswith("events.out.tfevents.")


def _run_id(run: _Run) -> str:
    """The same files (names within the run's folder, and bytes) give the same id, wherever they are imported
    from: a second import finds the run there."""
    files = run.files + ([run.hparams] if run.hparams is not None else [])
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        h.update(f.name.encode("utf-8", "surrogateescape") + b"\0" + f.stat().st_size.to_bytes(8, "little"))
        with open(f, "rb") as src:
            while chunk := src.read(CHUNK):
                h.update(chunk)
    return h.hexdigest()[:16]


def _exists(store: Store, run_id: str) -> bool:
    try:
        return store.get_run(run_id).id == run_id
    except NotFound:
        return False


def _already(store: Store, run: _Run) -> dict:
    summaries = store.metric_summaries([run.run_id]).get(run.run_id, {})
    return {"run_id": run.run_id, "name": run.name, "source": run.source,
            "metrics": {k: s.n for k, s in sorted(summaries.items())}, "already": True}


def _load_config(path: Path | None) -> dict:
    """hparams.yaml as a config; anything that is not a plain mapping (or that safe_load refuses, such as
    !!python/object tags from a saved Namespace) gives {}: the run still imports, without its config."""
    if path is None:
        return {}
    try:
        if path.stat().st_size > MAX_HPARAMS_BYTES:
            return {}
        with open(path, encoding="utf-8-sig") as f:
            loaded = yaml.safe_load(f)
        if not isinstance(loaded, dict) or not _small_tree(loaded):
            return {}
        # default=str: sets and other YAML types that JSON lacks become text instead of failing the import
        return json.loads(json.dumps(plain(loaded), default=str))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, TypeError, RecursionError):
        return {}


def _small_tree(value) -> bool:
    """Whether a loaded YAML value stays small once expanded (aliases are shared in memory, not in JSON)."""
    stack, nodes = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES or depth > MAX_CONFIG_DEPTH:
            return False  # also ends a self-referencing structure
        if isinstance(item, dict):
            stack += [(v, depth + 1) for kv in item.items() for v in kv]
        elif isinstance(item, (list, tuple, set)):
            stack += [(v, depth + 1) for v in item]
    return True


# -----------------------------------------------------------------------------------------------------------
# TensorBoard


def _read_tensorboard(run: _Run) -> tuple[dict, float | None]:
    """{metric: (step, value, epoch, wall_time)} and the time of the first event.

    TensorBoard's EventAccumulator interprets the events (legacy and TF2 scalars, and dropping the points a
    restarted job orphaned), but its loader is fed here by TensorBoard's record reader directly: the loader stops
    silently at the first damaged record (it expects files still being written), which would import a
    truncated run without a word. One strict read, in file order as the accumulator's own watcher reads them.
    """
    from google.protobuf.message import DecodeError
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat import tf
    from tensorboard.compat.proto import event_pb2

    # Given a folder, the accumulator's constructor reads nothing; the events come from the loop below.
    acc = EventAccumulator(str(run.files[0].parent), size_guidance={"scalars": 0, "tensors": 0})
    for path in run.files:
        label, n = run.labels[path], 0
        try:
            for record in event_file_loader._make_tf_record_iterator(str(path)):
                acc._ProcessEvent(event_pb2.Event.FromString(record))
                n += 1
        except tf.errors.DataLossError:
            raise BadInput(f"{label} is corrupt or truncated after {n} records; TensorBoard cannot read it") from None
        except DecodeError:
            raise BadInput(f"{label} is corrupt: record {n + 1} is not a TensorBoard event") from None
        except OSError as e:
            raise BadInput(f"{label} could not be read ({type(e).__name__})") from None
        except Exception as e:  # noqa: BLE001 - a well-framed record whose payload the accumulator chokes on
            raise BadInput(f"{label}: TensorBoard could not read record {n + 1} ({type(e).__name__})") from None

    tags = acc.Tags()
    series = {}
    for tag in tags["scalars"]:
        events = acc.Scalars(tag)
        series[tag] = _arrays(events, [e.value for e in events])
    for tag in tags["tensors"]:  # TF2 writes scalars as 0-d tensors
        events = acc.Tensors(tag)
        values = _scalar_tensor_values(acc, tag, events)
        if values is not None:
            series[tag] = _concat(series.get(tag), _arrays(events, values))
    series = {k: v for k, v in series.items() if k and len(v[0])}
    for tag in series:
        if len(tag) > MAX_KEY:
            raise BadInput(f"{run.labels[run.files[0]]} has a metric name longer than {MAX_KEY} characters: "
                           f"{_one_line(tag[:40])}...")
    return series, (acc.FirstEventTimestamp() if series else None)


def _arrays(events, values) -> tuple:
    n = len(events)
    step = np.fromiter((e.step for e in events), np.int64, n)
    wall = np.fromiter((e.wall_time for e in events), np.float64, n)
    return step, np.asarray(values, np.float64), None, wall


def _concat(a, b) -> tuple:
    if a is None:
        return b
    return (np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]), None, np.concatenate([a[3], b[3]]))


def _scalar_tensor_values(acc, tag: str, events) -> list[float] | None:
    """The values of a tensor series whose every tensor is one number; None for anything else (text, images,
    histograms, hparams)."""
    from tensorboard.util import tensor_util

    try:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
    except KeyError:
        plugin = ""
    if plugin not in ("scalars", ""):
        return None
    values = []
    for e in events:
        proto = e.tensor_proto
        # the declared shape first: make_ndarray would fill a huge declared shape from one value
        if math.prod(d.size for d in proto.tensor_shape.dim) != 1:
            return None
        try:
            arr = tensor_util.make_ndarray(proto)
        except Exception:  # noqa: BLE001 - a hostile tensor: this tag is not a scalar series
            return None
        if arr.size != 1 or arr.dtype.kind not in "iuf":
            return None
        values.append(float(arr.reshape(-1)[0]))
    return values


# -----------------------------------------------------------------------------------------------------------
# Lightning CSVLogger


def _read_lightning(run: _Run) -> tuple[dict, float | None]:
    """{metric: (step, value, epoch, wall_time)} from <name>/<version>/metrics.csv: one column per metric, empty
    where that metric was not logged on a row. The layout has no times: every point gets the file's mtime.
    Cells are parsed row by row into compact arrays, so a long file never sits in memory as strings."""
    path = run.files[0]
    label = run.labels[path]
    try:
        mtime = path.stat().st_mtime
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next((row for row in reader if row), None)
            if header is None:
                return {}, mtime
            header = [h.strip() for h in header]
            _check_header(header, label)
            at = {h: j for j, h in enumerate(header)}
            metrics = [(h, j) for h, j in at.items() if h not in NOT_METRICS]
            steps, epochs = array("q"), array("d")
            values = {h: array("d") for h, _ in metrics}
            present = {h: bytearray() for h, _ in metrics}
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise BadInput(f"{label} line {line} has {len(row)} cells, the header has {len(header)}")
                step = _parse_step(row[at["step"]], label, line)
                logged = False
                for h, j in metrics:
                    cell = row[j].strip()
                    if cell:
                        values[h].append(_parse_float(cell, label, line, h))
                        logged = True
                    else:
                        values[h].append(math.nan)
                    present[h].append(bool(cell))
                if logged and step is None:
                    raise BadInput(f"{label} line {line} has metric values but no step")
                steps.append(0 if step is None else step)
                epochs.append(_parse_float(row[at["epoch"]], label, line, "epoch") if "epoch" in at else math.nan)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        detail = type(e).__name__ if isinstance(e, OSError) else _short(e)  # an OSError names our temp path
        raise BadInput(f"{label} is not a readable CSV file ({detail})") from None

    step_all = np.frombuffer(steps, np.int64)
    epoch_all = np.frombuffer(epochs, np.float64)
    series = {}
    for h, _ in metrics:
        mask = np.frombuffer(bytes(present[h]), np.bool_)
        if mask.any():
            series[h] = (step_all[mask], np.frombuffer(values[h], np.float64)[mask],
                         epoch_all[mask] if "epoch" in at else None, np.full(int(mask.sum()), mtime))
    return series, mtime


def _check_header(header: list[str], label: str) -> None:
    if "step" not in header:
        raise BadInput(f"{label} has no step column (Lightning's CSVLogger writes one)")
    for h in header:
        if not h or len(h) > MAX_KEY:
            raise BadInput(f"{label} has an empty or too long column name (1 to {MAX_KEY} characters)")
    if len(set(header)) != len(header):
        raise BadInput(f"{label} has a repeated column name")


def _parse_step(cell: str, label: str, line: int) -> int | None:
    cell = cell.strip()
    if cell == "":
        return None
    try:
        step = int(cell)
    except ValueError:
        try:
            as_float = float(cell)
        except ValueError:
            as_float = math.nan
        if not (math.isfinite(as_float) and as_float.is_integer()):
            raise BadInput(f"{label} line {line}: step {_one_line(cell[:20])!r} is not a whole number") from None
        step = int(as_float)
    if not -(2**63) <= step < 2**63:
        raise BadInput(f"{label} line {line}: step {step} is out of range")
    return step


def _parse_float(cell: str, label: str, line: int, column: str) -> float:
    cell = cell.strip()
    if not cell:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise BadInput(f"{label} line {line}, column {_one_line(column[:40])!r}: "
                       f"{_one_line(cell[:20])!r} is not a number") from None


# -----------------------------------------------------------------------------------------------------------
# zip uploads


def _checked_entries(zf: zipfile.ZipFile, max_bytes: int, max_files: int) -> list[tuple[zipfile.ZipInfo, tuple]]:
    """The file entries with their path parts, after refusing anything unsafe; nothing is extracted yet."""
    infos = zf.infolist()
    if len(infos) > max_files:
        raise BadInput(f"the zip archive has {len(infos)} entries, more than the limit of {max_files}")
    entries, seen, declared = [], set(), 0
    for info in infos:
        shown = repr(info.filename[:100])
        if info.flag_bits & 0x1:
            raise BadInput(f"the zip archive is encrypted ({shown}); upload an unencrypted zip")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BadInput(f"the zip entry {shown} is a symbolic link; links are not accepted")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise BadInput(f"the zip entry {shown} is not a regular file or folder")
        name = info.filename.replace("\\", "/")  # some Windows tools write backslashes
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise BadInput(f"the zip entry {shown} has control characters in its name")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise BadInput(f"the zip entry {shown} has an absolute path")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise BadInput(f"the zip entry {shown} points outside the archive (..)")
        if info.is_dir() or not parts:
            continue
        if info.compress_type not in ZIP_METHODS:
            raise BadInput(f"the zip entry {shown} uses a compression other than deflate; re-create the zip "
                           "with a standard zip tool")
        if parts in seen:
            raise BadInput(f"the zip archive holds {shown} twice")
        seen.add(parts)
        declared += info.file_size
        if declared > max_bytes:
            raise BadInput(f"the zip archive unpacks to more than {_mb(max_bytes)}; refused as a possible "
                           "compression bomb")
        entries.append((info, parts))
    return entries


def _extract(zf: zipfile.ZipFile, entries, dest: Path, max_bytes: int) -> None:
    """Write the entries under dest, counting the bytes actually inflated (the declared sizes can lie)."""
    total = 0
    for info, parts in entries:
        target = dest.joinpath(*parts)
        shown = repr(info.filename[:100])
        if dest not in target.parents:  # cannot happen after the checks: a last line of defence
            raise BadInput(f"the zip entry {shown} points outside the archive")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "xb") as out:
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if total > max_bytes or written > info.file_size:
                        raise BadInput(f"the zip archive unpacks to more than {_mb(max_bytes)} or more than it "
                                       "declares; refused as a possible compression bomb")
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError):
            raise BadInput(f"the zip entry {shown} is corrupt") from None
        except OSError as e:
            raise BadInput(f"the zip entry {shown} could not be unpacked ({type(e).__name__}); does it clash "
                           "with another entry's folder?") from None
        t = _zip_time(info.date_time)
        if t is not None:
            os.utime(target, (t, t))  # Lightning points take the csv's mtime: keep the one in the zip


# -----------------------------------------------------------------------------------------------------------
# small helpers


def _zip_time(date_time) -> float | None:
    try:
        return time.mktime((*date_time, 0, 0, -1))  # zip times are local, without a zone
    except (OverflowError, ValueError):
        return None


def _iso(t: float | None) -> str | None:
    """The store's ISO format (UTC, milliseconds), or None (now) for a missing or absurd time."""
    if t is None or not math.isfinite(t):
        return None
    try:
        return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return None


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


def _short(e: Exception) -> str:
    text = str(e).strip()
    return _one_line(text.splitlines()[0][:120] if text else type(e).__name__)


def _mb(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"
