"""PyTorch Lightning CSVLogger folders: <name>/<version>/metrics.csv, one column per metric, read line by line."""
from __future__ import annotations

import csv
import math
from array import array
from itertools import compress

import numpy as np

from recipe_core.errors import BadInput, first_line
from recipe_core.tracking.importers.series import MAX_SERIES, Budget, FoundRun, Part, check_name, printable

NOT_METRICS = ("epoch", "step", "created_at", "time")  # Lightning columns that are not metric series
MAX_ROW_CHARS = 4 << 20  # one metrics.csv line (10k columns of 400 characters); a 600 MB line would be 600M cells


def read_lightning(run: FoundRun, budget: Budget) -> tuple[dict, float | None]:
    """{metric: [Part]} from <name>/<version>/metrics.csv: one column per metric, empty where that metric was not
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
        # an OSError names our temp path
        detail = type(e).__name__ if isinstance(e, OSError) else printable(first_line(e, 120))
        raise BadInput(f"{label} is not a readable CSV file ({detail})") from None

    series = {}
    for j, (steps, values, epochs) in columns.items():
        if steps:
            series[header[j]] = [Part(np.frombuffer(steps, np.int64), np.frombuffer(values, np.float64),
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
            raise BadInput(f"{label} line {line} is not valid CSV ({printable(first_line(e, 120))})") from None


def _check_header(header: list[str], label: str) -> None:
    if "step" not in header:
        raise BadInput(f"{label} has no step column (Lightning's CSVLogger writes one)")
    metrics = len([h for h in header if h not in NOT_METRICS])
    if metrics > MAX_SERIES:
        raise BadInput(f"{label} has {metrics:,} metric columns, more than the limit of {MAX_SERIES:,} metric "
                       "series per run")
    for h in header:
        check_name(h, label)
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
            raise BadInput(f"{label} line {line}: step {printable(cell[:20])!r} is not a whole number") from None
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
        raise BadInput(f"{label} line {line}, column {printable(column[:40])!r}: "
                       f"{printable(cell[:20])!r} is not a number") from None
