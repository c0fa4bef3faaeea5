"""Human labels on a fixed sample of the validation split: the human baseline, agreement, suspect labels.

The sample holds distinct inputs (rows equal on every column but the target count once); identical inputs with
different targets in the dataset are "ambiguous" (noise no labeller can beat), never "suspect labels".

Labels are events with a client-made id (a resend is a no-op); an annotator's latest event for an item is their
label. Accuracy gets a Wilson interval, agreement Cohen's kappa per pair and Fleiss' kappa for three or more.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
import uuid
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from recipe_core import csv_export
from recipe_core.config import Settings
from recipe_core.data.db import DatasetDB
from recipe_core.data.records import DatasetRecord
from recipe_core.data.snapshot import ROW_ID
from recipe_core.data.sql import quote_ident
from recipe_core.errors import BadInput, Forbidden, NotFound, first_line
from recipe_core.labelling import agreement
from recipe_core.tracking import audit
from recipe_core.tracking.access import Identity, require_write
from recipe_core.tracking.records import LabelEvent
from recipe_core.tracking.store import Store
from recipe_core.training import evaluation, splits, targets

DEFAULT_N = 100
SAMPLE_SEED = 0  # the sample is the same for everyone: fixed seed over the persisted split's validation rows
MAX_IMPORT_BYTES = 10 * 2**20
MAX_NOTE_CHARS = 2000
MAX_NAME_CHARS = 80


@dataclass(frozen=True)
class Baseline:
    """What labelling a dataset and target needs: the task, the classes, the fixed sample and the true labels."""
    dataset_id: str
    target: str
    task: str
    classes: tuple[str, ...]  # classification: every label as text; empty for regression
    items: tuple[int, ...]  # the fixed sample of validation rows, in the order people see them
    truth: dict  # item -> the dataset's label (text, or a float for regression)
    shared: dict = field(default_factory=dict)  # item -> rows of the dataset with the same input (itself included)
    # item -> {target value: rows} where the dataset's rows with this item's input do not agree on the target
    ambiguous: dict = field(default_factory=dict)
    n_ambiguous_inputs: int = 0  # over the whole dataset: inputs whose rows have different targets,
    n_ambiguous_rows: int = 0  # and the rows that hold them


def baseline(settings: Settings, store: Store, record: DatasetRecord, target: str, n: int = DEFAULT_N,
             task: str | None = None) -> Baseline:
    if not 1 <= n <= 100_000:
        raise BadInput(f"the sample size must be from 1 to 100,000, not {n}")
    db = DatasetDB(settings, record)  # held open, so the target's read reuses its worker process
    try:
        task, y = targets.target_column(settings, record, target, task)
        groups = input_groups(db, target)
    finally:
        db.close()
    split = splits.get_or_create(store, record.id, target, y, task)
    if task == "classification":
        classes, codes = targets.class_labels(y)
        value = np.array(classes + [None], dtype=object)[codes]  # -1 (missing) -> None
    else:
        classes, number = [], pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
        value = np.where(np.isnan(number), None, number).astype(object)
    # The first row of each input in the same seeded order as ever: on data without duplicates, the old sample.
    order = np.random.default_rng(SAMPLE_SEED).permutation(split.rows("val"))
    _, first = np.unique(groups[order], return_index=True)
    items = order[np.sort(first)][:n]
    known = pd.DataFrame({"g": groups, "y": value}).dropna(subset=["y"])
    rows = pd.Series(groups).value_counts()
    distinct = known.groupby("g")["y"].nunique()
    noisy = distinct[distinct > 1].index
    per_value = known[known["g"].isin(noisy)].groupby(["g", "y"]).size()
    ambiguous = {}
    for i in items:
        g = groups[i]
        if g in noisy:
            counts = per_value.loc[g]
            ambiguous[int(i)] = {(k if task == "classification" else float(k)): int(c)
                                 for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}
    truth = {int(i): (value[i] if task == "classification" else float(value[i])) for i in items}
    return Baseline(record.id, target, task, tuple(classes), tuple(int(i) for i in items), truth,
                    shared={int(i): int(rows[groups[i]]) for i in items}, ambiguous=ambiguous,
                    n_ambiguous_inputs=len(noisy), n_ambiguous_rows=int(rows.reindex(noisy).sum()))


def input_groups(db: DatasetDB, target: str) -> np.ndarray:
    """One 64-bit hash per row (by row id) of every column but the target: rows with equal values share it (a
    false match needs a collision, ~n^2 / 2^65). Hash calls are nested by 200 columns so wide tables stay valid
    SQL; only the hashes leave DuckDB, not the table."""
    columns = [quote_ident(c) for c in db.columns if c != target]
    if not columns:
        return np.zeros(db.n_rows, dtype=np.uint64)
    parts = [f"hash({', '.join(columns[k:k + 200])})" for k in range(0, len(columns), 200)]
    key = parts[0] if len(parts) == 1 else f"hash({', '.join(parts)})"
    frame = db.df(f"SELECT {key} AS h FROM data ORDER BY {quote_ident(ROW_ID)}")
    return frame["h"].to_numpy(dtype=np.uint64)


# -- writing ------------------------------------------------------------------------------------------
def annotator_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise BadInput("say who is labelling: an annotator name is needed")
    if len(name) > MAX_NAME_CHARS:
        raise BadInput(f"an annotator name has at most {MAX_NAME_CHARS} characters")
    return name


def parse_label(base: Baseline, value) -> str:
    """The label as stored: one of the classes, or a finite number for regression (as text)."""
    text = str(value).strip() if value is not None else ""
    if base.task == "classification":
        if text not in base.classes:
            shown = ", ".join(base.classes[:10]) + (" …" if len(base.classes) > 10 else "")
            raise BadInput(f"{text!r} is not a class of {base.target!r}; use one of: {shown}")
        return text
    try:
        number = float(text)
    except ValueError:
        raise BadInput(f"{base.target!r} takes a number, not {text!r}") from None
    if not math.isfinite(number):
        raise BadInput(f"{base.target!r} takes a finite number, not {text!r}")
    return repr(number)


def check_annotator(who: Identity | None, annotator: str) -> str:
    """The annotator's name as stored; signed in (team mode), only one's own, and only as a member or admin."""
    name = annotator_name(annotator)
    if who is not None and who.team:
        require_write(who, "label")
        if name != who.name:
            raise Forbidden(f"you are signed in as {who.name}: you may not label as {name[:MAX_NAME_CHARS]}")
    return name


def add(store: Store, base: Baseline, annotator: str, item: int, label, note: str = "",
        features: tuple[str, ...] = (), event_id: str | None = None, who: Identity | None = None) -> LabelEvent:
    """Validate and store one label (label None: skipped). Returns the stored event; a repeated id is a no-op.
    With who (signed in), a label under another name is refused and nothing is stored."""
    annotator = check_annotator(who, annotator)
    if int(item) not in base.truth:
        raise NotFound(f"item {item} is not in the labelling sample of {base.target!r}")
    if len(note or "") > MAX_NOTE_CHARS:
        raise BadInput(f"a note has at most {MAX_NOTE_CHARS:,} characters")
    event = LabelEvent(event_id=event_id or uuid.uuid4().hex, dataset_id=base.dataset_id, target=base.target,
                       item=int(item), annotator=annotator_name(annotator),
                       label=None if label is None else parse_label(base, label), note=note or "",
                       features=tuple(features))
    store.add_label(event)
    return event


def import_csv(store: Store, base: Baseline, annotator: str, data: bytes, who: Identity | None = None) -> int:
    """Labels made elsewhere, as CSV `item,label[,note]`: all rows are checked before any is stored; importing the
    same file again stores nothing new (event ids come from the file's content). Returns the rows imported; with
    who, the import is audited (and, signed in, refused under another name)."""
    annotator = check_annotator(who, annotator)
    if len(data) > MAX_IMPORT_BYTES:
        raise BadInput(f"the label file is over {MAX_IMPORT_BYTES // 2**20} MB")
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise BadInput(f"the label file is not a readable CSV: {first_line(e)}") from None
    if list(frame.columns[:2]) != ["item", "label"] or len(frame.columns) > 3 or (
            len(frame.columns) == 3 and frame.columns[2] != "note"):
        raise BadInput("the label file needs the columns item,label and optionally note")
    name = annotator_name(annotator)
    checked = []
    for line, row in enumerate(frame.itertuples(index=False), start=2):
        try:
            item = int(row.item)
        except ValueError:
            raise BadInput(f"line {line}: item must be a row id, not {row.item!r}") from None
        if item not in base.truth:
            raise BadInput(f"line {line}: item {item} is not in the labelling sample of {base.target!r}")
        try:
            label = parse_label(base, row.label)
        except BadInput as e:
            raise BadInput(f"line {line}: {e}") from None
        checked.append((item, label, getattr(row, "note", "") or ""))
    digest = hashlib.sha256(data + name.encode()).hexdigest()[:24]
    for i, (item, label, note) in enumerate(checked):
        add(store, base, name, item, label, note[:MAX_NOTE_CHARS], event_id=f"import-{digest}-{i}")
    if who is not None:
        audit.record(store, who, "label_import", "dataset", base.dataset_id,
                     f"{len(checked)} labels of {base.target} as {name}")
    return len(checked)


# -- reading --------------------------------------------------------------------------------------------
def latest(events: list[LabelEvent]) -> dict[tuple[str, int], LabelEvent]:
    """(annotator, item) -> that annotator's latest event for the item (events come oldest first)."""
    out = {}
    for e in events:
        out[(e.annotator, e.item)] = e
    return out


def table(base: Baseline, events: list[LabelEvent]) -> pd.DataFrame:
    """The current labels, one row per annotator and item (skips included, label empty)."""
    rows = [{"item": e.item, "annotator": e.annotator, "label": e.label, "dataset_label": base.truth.get(e.item),
             "note": e.note, "features": ", ".join(e.features),
             "at": pd.Timestamp(e.at, unit="s", tz="UTC").isoformat(timespec="seconds")}
            for e in latest(events).values() if e.item in base.truth]
    return pd.DataFrame(rows, columns=["item", "annotator", "label", "dataset_label", "note", "features", "at"])


def _by_annotator(base: Baseline, events: list[LabelEvent]) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for (annotator, item), e in latest(events).items():
        if e.label is not None and item in base.truth:
            out.setdefault(annotator, {})[item] = e.label
    return out


def _score(base: Baseline, labels: dict[int, str]) -> dict:
    items = sorted(labels)
    if base.task == "classification":
        correct = sum(labels[i] == base.truth[i] for i in items)
        low, high = evaluation.wilson(correct, len(items))
        return {"accuracy": correct / len(items), "ci_low": low, "ci_high": high}
    errors = np.array([abs(float(labels[i]) - base.truth[i]) for i in items])
    half = evaluation.Z95 * errors.std(ddof=1) / math.sqrt(len(errors)) if len(errors) > 1 else math.nan
    return {"mae": float(errors.mean()), "ci_low": float(errors.mean() - half), "ci_high": float(errors.mean() + half)}


def confusion(base: Baseline, events: list[LabelEvent], annotator: str) -> list[list[int]]:
    """One annotator's labels against the dataset's (rows: dataset label, columns: the annotator's)."""
    given = _by_annotator(base, events).get(annotator, {})
    index = {c: k for k, c in enumerate(base.classes)}
    truth = np.array([index[base.truth[i]] for i in given], dtype=int)
    said = np.array([index[given[i]] for i in given], dtype=int)
    return evaluation.confusion(truth, said, len(base.classes)).tolist()


def summary(base: Baseline, events: list[LabelEvent]) -> dict:
    """Per annotator: labelled count and accuracy (or MAE) with a 95% interval; agreement; suspect labels."""
    by = _by_annotator(base, events)
    annotators = [{"name": name, "n_labelled": len(labels), **_score(base, labels)}
                  for name, labels in sorted(by.items())]
    pairs, disagreements = [], set()
    for a, b in combinations(sorted(by), 2):
        common = sorted(set(by[a]) & set(by[b]))
        pair = {"a": a, "b": b, "n_common": len(common), "cohen_kappa": None}
        if common and base.task == "classification":
            x, y = [by[a][i] for i in common], [by[b][i] for i in common]
            kappa = agreement.cohen_kappa(x, y, list(base.classes))  # NaN (one label in common) is reported as None
            pair["cohen_kappa"] = None if math.isnan(kappa) else float(kappa)
            disagreements |= {i for i, u, v in zip(common, x, y, strict=True) if u != v}
        pairs.append(pair)
    out = {"n_items": len(base.items), "task": base.task, "annotators": annotators, "agreement": pairs,
           "disagreements": sorted(disagreements), "suspect_labels": suspect_labels(base, by),
           "ambiguous_inputs": ambiguous_inputs(base, by)}
    if base.task == "classification" and len(by) >= 3:
        everyone = sorted(set.intersection(*(set(v) for v in by.values())))
        if everyone:
            out["fleiss_kappa"] = agreement.fleiss_kappa([[by[a][i] for a in by] for i in everyone], list(base.classes))
            out["fleiss_n_items"] = len(everyone)
    return out


def suspect_labels(base: Baseline, by: dict[str, dict[int, str]]) -> list[int]:
    """Items where at least two annotators agree with each other but not with the dataset's label, on an input
    whose rows all have that one label (where they do not, the input is ambiguous: see ambiguous_inputs)."""
    if base.task != "classification":
        return []
    suspects = []
    for item in base.items:
        if item in base.ambiguous:
            continue
        given = [labels[item] for labels in by.values() if item in labels]
        if len(given) >= 2 and len(set(given)) == 1 and given[0] != base.truth[item]:
            suspects.append(item)
    return suspects


def ambiguous_inputs(base: Baseline, by: dict[str, dict[int, str]]) -> list[dict]:
    """The sampled inputs whose identical rows in the dataset have different targets: each with its row count,
    the targets with their counts, and what the annotators said."""
    out = []
    for item in base.items:
        if item in base.ambiguous:
            said = sorted(labels[item] for labels in by.values() if item in labels)
            out.append({"item": item, "rows": base.shared.get(item, sum(base.ambiguous[item].values())),
                        "dataset labels": ", ".join(f"{_shown(v)} ×{n}" for v, n in base.ambiguous[item].items()),
                        "people said": ", ".join(_shown(v) for v in said)})
    return out


def _shown(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def export_bytes(base: Baseline, events: list[LabelEvent], fmt: str = "csv") -> bytes:
    """Every current label with annotator, time and notes: CSV (formula cells neutralized) or Parquet."""
    return _encode(table(base, events), fmt)


def export(base: Baseline, events: list[LabelEvent], path: Path) -> int:
    """Write the export to a file (.parquet: Parquet, else CSV); returns the number of labels written."""
    frame = table(base, events)
    Path(path).write_bytes(_encode(frame, "parquet" if Path(path).suffix.lower() == ".parquet" else "csv"))
    return len(frame)


def _encode(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt != "parquet":
        return csv_export.frame_csv(frame)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


# -- what the page shows -------------------------------------------------------------------------------------
_PIXEL = re.compile(r"^(.*?)(\d+)_(\d+)$")


def pixel_grid(columns: list[str]) -> list[list[str]] | None:
    """Columns named like pixel_<row>_<col> that fill a whole grid (e.g. the 8x8 digits): their names as rows of
    the image, so an item can be shown as a picture; None when the columns are not an image."""
    cells = {}
    for name in columns:
        m = _PIXEL.match(name)
        if m:
            cells.setdefault(m.group(1), {})[(int(m.group(2)), int(m.group(3)))] = name
    for grid in cells.values():
        rows = 1 + max(r for r, _ in grid)
        cols = 1 + max(c for _, c in grid)
        if rows * cols == len(grid) >= 16 and rows > 1 and cols > 1:
            return [[grid[(r, c)] for c in range(cols)] for r in range(rows)]
    return None


def placed(value, quantiles: dict | None) -> str:
    """Where a number sits in its column, from the profile's quantiles: 'below p5', 'p25-p50', 'above p95'."""
    if quantiles is None or value is None or isinstance(value, str):
        return ""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(x):
        return "not finite"
    marks = sorted((float(k[1:]) if isinstance(k, str) else float(k) * 100, float(v)) for k, v in quantiles.items())
    if not marks:
        return ""
    if x < marks[0][1]:
        return f"below p{marks[0][0]:g}"
    for (p_lo, v_lo), (p_hi, v_hi) in zip(marks, marks[1:], strict=False):
        if v_lo <= x <= v_hi:
            return f"p{p_lo:g}–p{p_hi:g}"
    return f"above p{marks[-1][0]:g}"


def features_used(events: list[LabelEvent]) -> pd.DataFrame:
    """How often each feature was named as used, over the current labels of every annotator."""
    counts: dict[str, set] = {}
    uses: dict[str, int] = {}
    for e in latest(events).values():
        for f in e.features:
            uses[f] = uses.get(f, 0) + 1
            counts.setdefault(f, set()).add(e.annotator)
    rows = [{"feature": f, "items": n, "annotators": len(counts[f])} for f, n in uses.items()]
    return pd.DataFrame(rows, columns=["feature", "items", "annotators"]).sort_values(
        ["items", "feature"], ascending=[False, True]).reset_index(drop=True)


def models_on_items(base: Baseline, events: list[LabelEvent], model_runs: list, predictions: dict) -> pd.DataFrame:
    """Humans and every finished model run scored on the same items (those the humans labelled).

    predictions: run id -> (rows, pred) as stored with the run (artifacts.load_predictions)."""
    by = _by_annotator(base, events)
    items = sorted(set().union(*by.values())) if by else []
    rows = []
    for name, given in sorted(by.items()):
        rows.append({"who": name, "kind": "human", "n_items": len(given), **_score(base, given)})
    if not items:
        return pd.DataFrame(rows)
    for run in model_runs:
        if run.id not in predictions:
            continue
        where = {int(r): i for i, r in enumerate(predictions[run.id][0])}
        pred = predictions[run.id][1]
        shared = [i for i in items if i in where]
        if not shared:
            continue
        if base.task == "classification":
            given = {i: base.classes[int(np.argmax(pred[where[i]]))] for i in shared}
        else:
            given = {i: repr(float(pred[where[i]])) for i in shared}
        rows.append({"who": run.name, "kind": run.model, "n_items": len(shared), **_score(base, given)})
    return pd.DataFrame(rows)
