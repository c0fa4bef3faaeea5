"""Importers: TensorBoard event folders and PyTorch Lightning CSVLogger folders become runs in the store.

Every file is read and checked before the first run is written, so a bad file leaves nothing behind; a zip
upload is checked entry by entry before anything is extracted. Importing the same files again adds nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import yaml

from recipe_core.config import load_settings
from recipe_core.errors import BadInput, NotFound
from recipe_core.jsonsafe import plain
from recipe_core.tracking.api import start_run
from recipe_core.tracking.importers.archive import MAX_ZIP_BYTES, MAX_ZIP_FILES, extract_checked, open_zip
from recipe_core.tracking.importers.lightning import read_lightning
from recipe_core.tracking.importers.series import Budget, FoundRun, printable
from recipe_core.tracking.importers.tensorboard import is_events_file, read_tensorboard
from recipe_core.tracking.store import Store

HASH_BLOCK = 1 << 20  # bytes per read when hashing a run's files
MAX_HPARAMS_BYTES = 1 << 20  # a bigger hparams.yaml is ignored (config {}): it is a config, not data
MAX_CONFIG_NODES = 20_000  # YAML aliases let a small file expand enormously once saved as JSON
MAX_CONFIG_DEPTH = 50
SKIP_DIRS = ("__MACOSX",)  # macOS zips mirror every file there as "._name" resource forks


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
        raise BadInput(f"no such file or folder: {printable(str(path))}")
    path = path.resolve()
    return _import(store, path, prefix=path.parent.name if path.is_file() else path.name, author=author,
                   where=printable(path.name or str(path)), max_points=max_points)


def import_zip(store: Store, data, author: str | None = None, max_bytes: int = MAX_ZIP_BYTES,
               max_files: int = MAX_ZIP_FILES, *, name: str = "upload", max_points: int | None = None) -> list[dict]:
    """Import a zip upload (hostile input): runs are named by their paths inside the zip.

    name names a run whose files sit at the zip's top level. Nothing is extracted before every entry passed
    the checks, and the extracted files live in a temporary folder that is removed afterwards. max_points caps
    the metric points of the whole import (None: the RECIPE_MAX_IMPORT_POINTS setting).
    """
    zf = open_zip(data)
    with zf, tempfile.TemporaryDirectory(prefix="recipe-import-") as tmp:
        extract_checked(zf, Path(tmp), max_bytes, max_files)
        return _import(store, Path(tmp), prefix="", author=author, where="the zip archive",
                       fallback=printable(name)[:200] or "upload", max_points=max_points)


# -----------------------------------------------------------------------------------------------------------
# finding, checking and writing runs


def _import(store: Store, root: Path, prefix: str, author: str | None, where: str, fallback: str = "import",
            max_points: int | None = None) -> list[dict]:
    runs = _find_runs(root, prefix, fallback)
    if not runs:
        raise BadInput(f"no TensorBoard event files or Lightning metrics.csv found under {where}")
    budget = Budget(load_settings().max_import_points if max_points is None else max_points)

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
        read = read_tensorboard if run.source == "tensorboard" else read_lightning
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


def _find_runs(root: Path, prefix: str, fallback: str) -> list[FoundRun]:
    def name_of(folder: Path, base: Path) -> str:
        rel = folder.relative_to(base).as_posix()
        return "/".join(p for p in (prefix, "" if rel == "." else rel) if p) or fallback

    def label(f: Path, base: Path) -> str:
        return printable("/".join(p for p in (prefix, f.relative_to(base).as_posix()) if p))

    if root.is_file():  # one events file or metrics.csv: its folder's hparams.yaml still counts
        base = root.parent
        hparams = base / "hparams.yaml"
        hparams = hparams if hparams.is_file() else None
        name = prefix or fallback
        if root.name == "metrics.csv":
            return [FoundRun(name, "lightning", [root], {root: label(root, base)}, hparams)]
        if is_events_file(root.name):
            return [FoundRun(name, "tensorboard", [root], {root: label(root, base)}, hparams)]
        raise BadInput(f"{printable(root.name)} is neither a TensorBoard events file nor a Lightning metrics.csv")

    runs = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not followed (no cycles)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        folder = Path(dirpath)
        name = name_of(folder, root)
        events = sorted(folder / n for n in filenames if is_events_file(n) and (folder / n).is_file())
        hparams = folder / "hparams.yaml" if "hparams.yaml" in filenames else None
        hparams = hparams if hparams is not None and hparams.is_file() else None
        labels = {f: label(f, root) for f in events}
        if events:
            runs.append(FoundRun(name, "tensorboard", events, labels, hparams))
        metrics = folder / "metrics.csv"
        if "metrics.csv" in filenames and metrics.is_file():
            runs.append(FoundRun(name, "lightning", [metrics], {metrics: label(metrics, root)}, hparams))
    return runs


def _run_id(run: FoundRun) -> str:
    """The same files (names within the run's folder, and bytes) give the same id, wherever they are imported
    from: a second import finds the run there."""
    files = run.files + ([run.hparams] if run.hparams is not None else [])
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        h.update(f.name.encode("utf-8", "surrogateescape") + b"\0" + f.stat().st_size.to_bytes(8, "little"))
        with open(f, "rb") as src:
            while chunk := src.read(HASH_BLOCK):
                h.update(chunk)
    return h.hexdigest()[:16]


def _exists(store: Store, run_id: str) -> bool:
    try:
        return store.get_run(run_id).id == run_id
    except NotFound:
        return False


def _already(store: Store, run: FoundRun) -> dict:
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


def _iso(t: float | None) -> str | None:
    """The store's ISO format (UTC, milliseconds), or None (now) for a missing or absurd time."""
    if t is None or not math.isfinite(t):
        return None
    try:
        return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return None
