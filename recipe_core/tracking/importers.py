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
import struct
import tempfile
import time
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import compress
from pathlib import Path

import numpy as np
import yaml

from recipe_core.config import load_settings
from recipe_core.errors import BadInput, NotFound
from recipe_core.jsonsafe import plain
from recipe_core.safetext import check_text
from recipe_core.tracking.api import start_run
from recipe_core.tracking.store import CHUNK_POINTS, MAX_KEY, Store

MAX_ZIP_BYTES = 500 << 20  # uncompressed size of a zip upload, declared and actually extracted
MAX_ZIP_FILES = 10_000
CHUNK = 1 << 20  # bytes per read when hashing and extracting
MAX_HPARAMS_BYTES = 1 << 20  # a bigger hparams.yaml is ignored (config {}): it is a config, not data
MAX_CONFIG_NODES = 20_000  # YAML aliases let a small file expand enormously once saved as JSON
MAX_CONFIG_DEPTH = 50
NOT_METRICS = ("epoch", "step", "created_at", "time")  # Lightning columns that are not metric series
SKIP_DIRS = ("__MACOSX",)  # macOS zips mirror every file there as "._name" resource forks
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # bzip2/lzma can inflate unboundedly in one read
# Metric series (Lightning columns, TensorBoard tags) one run may have. Each costs a store transaction when written
# (~4 ms with SQLite's synchronous=FULL), and a page cannot chart 100k of them anyway.
MAX_SERIES = 10_000
MAX_ROW_CHARS = 4 << 20  # one metrics.csv line (10k columns of 400 characters); a 600 MB line would be 600M cells
RECORD_BLOCK = 4 << 20  # bytes of an events file read and checked at a time
MAX_RECORD_BYTES = 64 << 20  # one event: a big graph or image fits; TensorBoard's reader reads any declared length


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


def import_path(store: Store, path, author: str | None = None, *, max_points: int | None = None) -> list[dict]:
    """Import every run under a folder (or one events file / metrics.csv); returns one dict per run, by name.

    A folder holding TensorBoard event files is one run, and so is a folder holding a Lightning metrics.csv;
    runs are named by their folder relative to the import root, prefixed by the root's own name. max_points caps
    the metric points of the whole import (None: the RECIPE_MAX_IMPORT_POINTS setting).
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no such file or folder: {_one_line(str(path))}")
    path = path.resolve()
    return _import(store, path, prefix=path.parent.name if path.is_file() else path.name, author=author,
                   where=_one_line(path.name or str(path)), max_points=max_points)


def import_zip(store: Store, data, author: str | None = None, max_bytes: int = MAX_ZIP_BYTES,
               max_files: int = MAX_ZIP_FILES, *, name: str = "upload", max_points: int | None = None) -> list[dict]:
    """Import a zip upload (hostile input): runs are named by their paths inside the zip.

    name names a run whose files sit at the zip's top level. Nothing is extracted before every entry passed
    the checks, and the extracted files live in a temporary folder that is removed afterwards. max_points caps
    the metric points of the whole import (None: the RECIPE_MAX_IMPORT_POINTS setting).
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
                       fallback=_one_line(name)[:200] or "upload", max_points=max_points)


# -----------------------------------------------------------------------------------------------------------
# finding, checking and writing runs


def _import(store: Store, root: Path, prefix: str, author: str | None, where: str, fallback: str = "import",
            max_points: int | None = None) -> list[dict]:
    runs = _find_runs(root, prefix, fallback)
    if not runs:
        raise BadInput(f"no TensorBoard event files or Lightning metrics.csv found under {where}")
    budget = _Budget(load_settings().max_import_points if max_points is None else max_points)

    # Read and check every new run completely before writing the first one: a bad file anywhere leaves the
    # store as it was. What is held meanwhile is compact arrays (24 bytes a point), not events or text, and the
    # budget stops a file that would hold too many of them as soon as it passes the cap.
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
        read = _read_tensorboard if run.source == "tensorboard" else _read_lightning
        series, first_time = read(run, budget)
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
            # in slices: log_arrays builds its rows for all the points it is given at once
            counts = {k: sum(store.log_arrays(run.run_id, k, *cols) for part in parts for cols in part.slices())
                      for k, parts in series.items()}
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


class _Budget:
    """The metric points one import holds, all runs together (every run is read before the first is written)."""

    def __init__(self, max_points: int):
        self.max_points, self.held = max_points, 0

    def take(self, n: int, label: str) -> None:
        self.held += n
        if self.held > self.max_points:
            raise BadInput(f"{label} brings the import past {self.max_points:,} metric points, the limit "
                           "RECIPE_MAX_IMPORT_POINTS sets; import fewer runs at once, or raise the limit")


@dataclass
class _Part:
    """Points of one metric as read from one file, ready to write: numpy views of the compact arrays read."""
    step: np.ndarray
    value: np.ndarray
    epoch: np.ndarray | None
    wall: np.ndarray | float  # a Lightning file has no times: its mtime for every point
    keep: np.ndarray | None = None  # False where a restart orphaned the point (TensorBoard drops those)

    def __len__(self) -> int:
        return len(self.step) if self.keep is None else int(np.count_nonzero(self.keep))

    def slices(self):
        """(step, value, epoch, wall_time) for store.log_arrays, one store chunk at a time: a call holds ~100 bytes
        a point while it writes, and a series that fits one chunk is not rewritten when its run finishes."""
        for start in range(0, len(self.step), CHUNK_POINTS):
            cut = slice(start, start + CHUNK_POINTS)
            keep = slice(None) if self.keep is None else self.keep[cut]
            step = self.step[cut][keep]
            if len(step):
                wall = np.full(len(step), self.wall) if isinstance(self.wall, float) else self.wall[cut][keep]
                yield (step, self.value[cut][keep], None if self.epoch is None else self.epoch[cut][keep], wall)


def _check_name(name: str, label: str) -> str:
    """A metric name the store can hold, else one line naming the file."""
    shown = repr(_one_line(name[:40]) + ("..." if len(name) > 40 else ""))
    if not name or len(name) > MAX_KEY:
        raise BadInput(f"{label} has an empty or too long metric name {shown} (1 to {MAX_KEY} characters)")
    return check_text(name, f"{label}: the metric name {shown}")


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


def _read_tensorboard(run: _Run, budget: _Budget) -> tuple[dict, float | None]:
    """{metric: [_Part]} and the time of the first event: what TensorBoard's EventAccumulator would show.

    The accumulator itself keeps every point as a Python object (315 MB for 1M scalar events, 40 s), so its
    logic for scalars is reproduced here on compact arrays: legacy simple_value summaries, TF2 0-d tensors
    of the scalars plugin (its name from the metadata on a tag's first event), and the points a restarted job
    orphaned (see _Restarts). One strict read, in file order as the accumulator's own watcher reads them: a
    damaged record refuses the file, where TensorBoard's loader would stop silently and import a truncated run.
    """
    from google.protobuf.message import DecodeError
    from tensorboard.backend.event_processing.event_util import ParseFileVersion
    from tensorboard.compat.proto import event_pb2

    session_start = event_pb2.SessionLog.START
    first_time, file_version, most_recent_step = None, None, -1
    scalars, tensors, plugins, tags = {}, {}, {}, set()  # tensors[tag] is None once it shows it is no scalar
    restarts = _Restarts()

    def held(tag: str) -> None:
        tags.add(tag)
        if len(tags) > MAX_SERIES:
            raise BadInput(f"{label} has more than {MAX_SERIES:,} tags, the limit of metric series per run")

    for path in run.files:
        label, n = run.labels[path], 0
        try:
            for record in _tf_records(path, label):
                event = event_pb2.Event.FromString(record)
                n += 1
                if first_time is None:
                    first_time = event.wall_time
                what, step = event.WhichOneof("what"), event.step
                if what == "file_version":
                    file_version = ParseFileVersion(event.file_version)
                # EventAccumulator._MaybePurgeOrphanedData
                if file_version and file_version >= 2:
                    if what == "session_log" and event.session_log.status == session_start:
                        restarts.purge(step, budget, label)
                elif step < most_recent_step and what == "summary":
                    for value in event.summary.value:  # an empty tag purges every tag (Reservoir.FilterItems)
                        if not value.tag or value.tag in scalars:
                            restarts.purge(step, budget, label, scalars[value.tag] if value.tag else None)
                else:
                    most_recent_step = step
                if what != "summary":
                    continue
                wall, added = event.wall_time, 0
                for value in event.summary.value:
                    tag, kind = value.tag, value.WhichOneof("value")
                    if tag not in plugins and value.HasField("metadata"):  # only a tag's first metadata counts
                        held(tag)
                        plugins[tag] = value.metadata.plugin_data.plugin_name
                    if kind == "simple_value":
                        points = scalars.get(tag)
                        if points is None:
                            held(tag)
                            points = scalars[tag] = _Scalars()
                        added += points.add_after(restarts, step, value.simple_value, wall)
                    elif kind == "tensor":
                        tag = tag or value.node_name  # tensor summaries of the old plugin-asset kind
                        if tensors.get(tag, ()) is None or plugins.get(tag, "scalars") not in ("scalars", ""):
                            continue
                        number = _tensor_scalar(value.tensor)
                        if number is None:
                            tensors[tag] = None
                            continue
                        points = tensors.get(tag)
                        if points is None:
                            held(tag)
                            points = tensors[tag] = _Points()
                        points.add(step, number, wall)
                        added += 1
                if added:
                    budget.take(added, label)
        except BadInput:
            raise
        except DecodeError:
            raise BadInput(f"{label} is corrupt: record {n + 1} is not a TensorBoard event") from None
        except OSError as e:
            raise BadInput(f"{label} could not be read ({type(e).__name__})") from None
        except Exception as e:  # noqa: BLE001 - a well-framed event whose payload is not what its fields say
            raise BadInput(f"{label}: TensorBoard could not read record {n + 1} ({type(e).__name__})") from None

    series = {tag: [points.kept(restarts)] for tag, points in scalars.items()}
    for tag, points in tensors.items():
        if points is not None and plugins.get(tag, "") in ("scalars", ""):
            series.setdefault(tag, []).append(points.part())
    series = {tag: [p for p in parts if len(p)] for tag, parts in series.items()}
    series = {_check_name(tag, run.labels[run.files[0]]): parts for tag, parts in series.items() if parts}
    return series, (first_time if series else None)


class _Points:
    """One tag's points while its files stream in: 24 bytes a point."""

    __slots__ = ("step", "value", "wall")

    def __init__(self):
        self.step, self.value, self.wall = array("q"), array("d"), array("d")

    def add(self, step: int, value: float, wall: float) -> None:
        self.step.append(step)
        self.value.append(value)
        self.wall.append(wall)

    def part(self) -> _Part:
        return _Part(np.frombuffer(self.step, np.int64), np.frombuffer(self.value, np.float64), None,
                     np.frombuffer(self.wall, np.float64))


class _Restarts:
    """EventAccumulator._Purge for scalars (it never purges tensors): a restart (SessionLog.START, in files of
    version 2 and later) drops every tag's points at steps >= its step; in older files, a step going backwards
    drops the points at steps >= it of the tags it carries.

    Worked out once at the end instead of on every restart, which scans every point held (a file of restarts
    then takes hours): a point survives when no purge recorded after it has a step <= its own. Two purges with no
    point added between them are one, so there are never more purges than points; each counts as a point."""

    def __init__(self):
        self.n = 0  # purges so far: a point added after k of them is subject to purges k, k + 1, ...
        self.purge_ids, self.purge_steps = array("q"), array("q")  # the purges of every tag
        self.added = 0  # scalar points added, to any tag
        self.added_at_purge = -1

    def purge(self, step: int, budget: _Budget, label: str, tag: _Scalars | None = None) -> None:
        """Purge the points at steps >= step of one tag (None: of every tag)."""
        at = self if tag is None else tag
        now = self.added if tag is None else len(tag.step)
        if at.purge_ids and at.added_at_purge == now:  # no point since the last purge: this one is the same purge
            at.purge_steps[-1] = min(at.purge_steps[-1], step)
            return
        at.purge_ids.append(self.n)
        at.purge_steps.append(step)
        at.added_at_purge = now
        self.n += 1
        budget.take(1, label)


class _Scalars(_Points):
    """A tag's legacy scalars, with what _Restarts needs: where purges happened between its points (16 bytes
    each, counted as a point), and the purges of this tag alone."""

    __slots__ = ("mark_at", "mark_purges", "purge_ids", "purge_steps", "added_at_purge")

    def __init__(self):
        super().__init__()
        self.mark_at, self.mark_purges = array("q"), array("q")  # the points from mark_at[i] on: after mark_purges[i]
        self.purge_ids, self.purge_steps = array("q"), array("q")
        self.added_at_purge = -1

    def add_after(self, restarts: _Restarts, step: int, value: float, wall: float) -> int:
        """Append a point; returns what it costs the budget."""
        marked = restarts.n != (self.mark_purges[-1] if self.mark_purges else 0)
        if marked:
            self.mark_at.append(len(self.step))
            self.mark_purges.append(restarts.n)
        self.add(step, value, wall)
        restarts.added += 1
        return 1 + marked

    def kept(self, restarts: _Restarts) -> _Part:
        part = self.part()
        ids = np.concatenate([np.frombuffer(restarts.purge_ids, np.int64), np.frombuffer(self.purge_ids, np.int64)])
        if not len(ids):
            return part
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        steps = np.concatenate([np.frombuffer(restarts.purge_steps, np.int64),
                                np.frombuffer(self.purge_steps, np.int64)])
        lowest = np.minimum.accumulate(steps[order][::-1])[::-1]  # lowest[i]: the lowest step of purges i, i+1, ...
        starts = [0, *self.mark_at]  # the points before the first mark came after no purge
        first = np.searchsorted(ids, [0, *self.mark_purges])  # the first purge each stretch of points is subject to
        keep = np.ones(len(part.step), bool)
        for start, end, i in zip(starts, [*starts[1:], len(part.step)], first.tolist()):
            if i < len(ids):
                np.less(part.step[start:end], lowest[i], out=keep[start:end])
        if not keep.all():
            part.keep = keep
        return part


def _tensor_scalar(proto) -> float | None:
    """The number a tensor holds if it holds exactly one; None for anything else (text, images, histograms)."""
    # the declared shape first: make_ndarray would fill a huge declared shape from one value
    dims = proto.tensor_shape.dim
    if dims and math.prod(d.size for d in dims) != 1:  # a scalar's shape has no dims
        return None
    # DT_FLOAT, as torch (float_val) and TF2 (tensor_content) write scalars, without make_ndarray's 24 µs
    if proto.dtype == 1:
        if len(proto.tensor_content) == 4:
            return struct.unpack("<f", proto.tensor_content)[0]
        if not proto.tensor_content and len(proto.float_val) == 1:
            return proto.float_val[0]
    from tensorboard.util import tensor_util

    try:
        arr = tensor_util.make_ndarray(proto)
    except Exception:  # noqa: BLE001 - a hostile tensor: this tag is not a scalar series
        return None
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        return None
    return float(arr.reshape(-1)[0])


def _tf_records(path: Path, label: str):
    """The records of an events file, checked as TensorBoard's reader checks them (the framing, and the CRC-32C of
    each length and payload), read RECORD_BLOCK bytes at a time and checked a block at a time: TensorBoard's reader
    computes the CRCs in pure Python, 14 µs of the ~40 a small scalar event took to import, and reads a record
    of any declared length into memory (three copies of it)."""
    n = 0  # records yielded

    def corrupt() -> BadInput:
        return BadInput(f"{label} is corrupt or truncated after {n} records; TensorBoard cannot read it")

    with open(path, "rb") as f:
        data = f.read(RECORD_BLOCK)
        while data:
            starts, lengths, pos = [], [], 0
            while len(data) - pos >= 12:  # the records wholly in data: length (8 bytes), its CRC, payload, its CRC
                (length,) = struct.unpack_from("<Q", data, pos)
                if length > len(data) - pos - 16:
                    break
                starts.append(pos)
                lengths.append(length)
                pos += 16 + length
            good = _sound_records(data, starts, lengths)
            for start, length in zip(starts[:good], lengths[:good]):
                n += 1
                yield data[start + 12:start + 12 + length]
            if good < len(starts):
                raise corrupt()
            rest, more = data[pos:], f.read(RECORD_BLOCK)
            if len(rest) >= 12:  # a record longer than what is left: check its length before reading that much
                (length, crc) = struct.unpack_from("<QI", rest)
                if _py_masked_crc32c(rest[:8]) != crc:
                    raise corrupt()
                if length > MAX_RECORD_BYTES:
                    raise BadInput(f"{label}: record {n + 1} declares {_mb(length)}, more than the limit of "
                                   f"{_mb(MAX_RECORD_BYTES)} for one event")
                more += f.read(max(0, 16 + length - len(rest) - len(more)))
            if not more and rest:
                raise corrupt()  # the file ends inside a record
            data = rest + more


def _sound_records(data: bytes, starts: list[int], lengths: list[int]) -> int:
    """How many of the records at starts pass their CRCs, from the first one on."""
    if not starts:
        return 0
    buf = np.frombuffer(data, np.uint8)
    at, sizes = np.array(starts, np.int64), np.array(lengths, np.int64)
    length_crc, crc = np.zeros(len(at), np.uint32), np.zeros(len(at), np.uint32)
    order = np.argsort(sizes, kind="stable")
    for members in np.split(order, np.flatnonzero(np.diff(sizes[order])) + 1):  # the records of one size
        size = lengths[members[0]]
        length_crc[members] = _py_masked_crc32c(struct.pack("<Q", size))
        if len(members) >= 32:  # a byte column at a time for all of them: faster from ~25 records on (measured)
            crc[members] = _masked_crc32c(buf, at[members] + 12, size)
        else:
            for i in members.tolist():
                crc[i] = _py_masked_crc32c(data[starts[i] + 12:starts[i] + 12 + size])
    bad = (length_crc != _uint32_at(buf, at + 8)) | (crc != _uint32_at(buf, at + 12 + sizes))
    return int(np.argmax(bad)) if bad.any() else len(starts)


def _crc32c_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)  # Castagnoli, reflected
    return table


_CRC32C = _crc32c_table()


def _masked_crc32c(buf: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """TFRecord's masked CRC-32C of buf[s:s + length] for every s, all at once: one byte column at a time."""
    crc = np.full(len(starts), 0xFFFFFFFF, np.uint32)
    for j in range(length):
        crc = _CRC32C[(crc ^ buf[starts + j]) & 0xFF] ^ (crc >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)


def _py_masked_crc32c(data: bytes) -> int:
    """TensorBoard's own masked CRC-32C (pure Python, 3 MB/s): for records of a length too rare to batch."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return masked_crc32c(data)


def _uint32_at(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    b = [buf[at + k].astype(np.uint32) for k in range(4)]
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)


# -----------------------------------------------------------------------------------------------------------
# Lightning CSVLogger


def _read_lightning(run: _Run, budget: _Budget) -> tuple[dict, float | None]:
    """{metric: [_Part]} from <name>/<version>/metrics.csv: one column per metric, empty where that metric was not
    logged on a row. The layout has no times: every point gets the file's mtime.

    Only the cells present are kept, as compact arrays (24 bytes a point): the old reader kept a value and a
    flag for every row and column, 5.1 GB for a 600 MB file of mostly empty cells."""
    path = run.files[0]
    label = run.labels[path]
    try:
        mtime = path.stat().st_mtime
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = _rows(f, label)
            first = next(rows, None)
            if first is None:
                return {}, mtime
            header = [h.strip() for h in first[1]]
            _check_header(header, label)
            width, at = len(header), {h: j for j, h in enumerate(header)}
            step_at, epoch_at = at["step"], at.get("epoch")
            columns = {j: (array("q"), array("d"), array("d")) for h, j in at.items() if h not in NOT_METRICS}
            numbers = list(range(width))  # compress over range() would build a new int for every cell
            for line, cells in rows:
                if len(cells) != width:
                    raise BadInput(f"{label} line {line} has {len(cells)} cells, the header has {width}")
                step = _parse_step(cells[step_at], label, line)
                epoch = math.nan if epoch_at is None else _parse_float(cells[epoch_at], label, line, "epoch")
                n = 0
                for j in compress(numbers, cells):  # the non-empty cells, found at C speed
                    points, cell = columns.get(j), cells[j].strip()
                    if points is None or not cell:
                        continue
                    if step is None:
                        raise BadInput(f"{label} line {line} has metric values but no step")
                    points[0].append(step)
                    points[1].append(_parse_float(cell, label, line, header[j]))
                    points[2].append(epoch)
                    n += 1
                if n:
                    budget.take(n, label)
    except (OSError, UnicodeDecodeError) as e:
        detail = type(e).__name__ if isinstance(e, OSError) else _short(e)  # an OSError names our temp path
        raise BadInput(f"{label} is not a readable CSV file ({detail})") from None

    series = {}
    for j, (steps, values, epochs) in columns.items():
        if steps:
            series[header[j]] = [_Part(np.frombuffer(steps, np.int64), np.frombuffer(values, np.float64),
                                       np.frombuffer(epochs, np.float64), mtime)]
    return series, mtime


def _rows(f, label: str):
    """(line number, cells) of each non-empty line of a CSV file: a row is one line (CSVLogger writes numbers, and
    quotes only the names that hold a comma or a quote), read at most MAX_ROW_CHARS at a time."""
    for line, text in enumerate(iter(lambda: f.readline(MAX_ROW_CHARS + 1), ""), 1):
        if len(text) > MAX_ROW_CHARS:
            raise BadInput(f"{label} line {line} is longer than {MAX_ROW_CHARS:,} characters")
        text = text.rstrip("\r\n")
        if not text:
            continue
        if '"' not in text:
            yield line, text.split(",")  # what csv makes of a line without quotes, in half the time
            continue
        try:
            yield line, next(csv.reader([text], strict=True))
        except csv.Error as e:  # e.g. a quoted cell going on past the end of the line
            raise BadInput(f"{label} line {line} is not valid CSV ({_short(e)})") from None


def _check_header(header: list[str], label: str) -> None:
    if "step" not in header:
        raise BadInput(f"{label} has no step column (Lightning's CSVLogger writes one)")
    metrics = len([h for h in header if h not in NOT_METRICS])
    if metrics > MAX_SERIES:
        raise BadInput(f"{label} has {metrics:,} metric columns, more than the limit of {MAX_SERIES:,} metric "
                       "series per run")
    for h in header:
        _check_name(h, label)
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
