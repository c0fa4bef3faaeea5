"""The metric codec: points of one run and metric packed into chunk rows (column arrays and a summary), and back.

Metric points are stored in chunks: one row per (run, key) per write (one per metric once the run ends), holding
the points as packed column arrays, plus the chunk's summary (last, min, max and their steps). Reading 100 runs
x 100k points is then a few hundred blob reads instead of ten million rows; a chart reads only the columns it
draws; evenly spaced steps (the usual case) are stored as first and stride; the runs table needs only summaries.
"""
from __future__ import annotations

import math

import numpy as np

DTYPE = np.dtype([("step", "<i8"), ("value", "<f8"), ("epoch", "<f8"), ("wall_time", "<f8")])
CHUNK_POINTS = 1_000_000  # a long write is split so no single blob grows without bound (8 MB a column)
FIELDS = ("step", "value", "epoch", "wall_time")


def nan_if_none(v) -> float:
    return math.nan if v is None else float(v)


def finite_or_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def encode(run_id: str, key: str, pts: np.ndarray) -> list[dict]:
    """Store rows for points of one key: their packed arrays and each chunk's summary. Infinities are stored as
    NaN: a value that is not finite has no place on a curve, and not every backend stores it."""
    rows = []
    for start in range(0, len(pts), CHUNK_POINTS):
        part = pts[start:start + CHUNK_POINTS].copy()
        part["value"][~np.isfinite(part["value"])] = np.nan
        part["epoch"][~np.isfinite(part["epoch"])] = np.nan
        values, steps = part["value"], part["step"]
        last = int(np.flatnonzero(steps == steps.max())[-1])
        finite = np.isfinite(values)
        lo = hi = None
        if finite.any():
            masked = np.where(finite, values, np.inf)
            lo = int(np.argmin(masked))
            hi = int(np.argmax(np.where(finite, values, -np.inf)))
        stride = int(steps[1] - steps[0]) if len(steps) > 1 else 1
        even = bool(np.all(steps == steps[0] + stride * np.arange(len(steps), dtype=np.int64)))
        epochs = part["epoch"]
        rows.append({"run_id": run_id, "key": key, "n": len(part), "last_step": int(steps[last]),
                     "last_value": finite_or_none(values[last]),
                     "min_value": None if lo is None else float(values[lo]),
                     "min_step": None if lo is None else int(steps[lo]),
                     "max_value": None if hi is None else float(values[hi]),
                     "max_step": None if hi is None else int(steps[hi]),
                     "step_first": int(steps[0]), "step_stride": stride if even else None,
                     "steps": b"" if even else steps.astype("<i8").tobytes(),
                     "vals": values.astype("<f8").tobytes(),
                     "epochs": b"" if np.isnan(epochs).all() else epochs.astype("<f8").tobytes(),
                     "walls": part["wall_time"].astype("<f8").tobytes()})
    return rows


def decode(m) -> dict[str, np.ndarray]:
    """A stored chunk's columns as arrays (only those selected), read-only views where possible."""
    n = int(m["n"])
    if m["step_stride"] is not None:
        step = m["step_first"] + int(m["step_stride"]) * np.arange(n, dtype=np.int64)
    else:
        step = np.frombuffer(m["steps"], "<i8")
    out = {"step": step, "value": np.frombuffer(m["vals"], "<f8")}
    if "epochs" in m:
        out["epoch"] = np.frombuffer(m["epochs"], "<f8") if len(m["epochs"]) else np.full(n, np.nan)
    if "walls" in m:
        out["wall_time"] = np.frombuffer(m["walls"], "<f8")
    return out


def joined(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The columns of a series' chunks end to end, in storage order (a single chunk is not copied)."""
    return {f: np.concatenate([c[f] for c in chunks]) if len(chunks) > 1 else chunks[0][f] for f in chunks[0]}


def points(chunks: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Decoded chunks end to end as one structured array of points (what encode takes)."""
    columns = joined(chunks)
    pts = np.zeros(len(columns["step"]), DTYPE)
    for name in FIELDS:
        pts[name] = columns[name]
    return pts
