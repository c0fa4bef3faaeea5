"""The target: its task (classification or regression), and its checks: class imbalance, and features that
predict it alone on held-out rows (leakage)."""
from __future__ import annotations

import math

from recipe_core.data import sizing
from recipe_core.data.column_stats import ColumnProfile
from recipe_core.data.columns import ColumnView, column_view
from recipe_core.data.db import DatasetDB
from recipe_core.data.quality import DataWarning, percent, shown
from recipe_core.data.snapshot import ROW_ID
from recipe_core.data.sql import quote_ident

MAX_CLASSES = 1000  # a classification target with more classes gets no imbalance or leakage check
REGRESSION_MIN_DISTINCT = 21  # a numeric target with more distinct values than 20 is a regression target
LEAK_BINS = 20  # numeric features are cut into this many quantile bins for the leakage lookup
LEAK_MIN_TEST = 30  # fewer held-out rows than this: no leakage verdict
# The rows a leakage lookup is fitted on; the others are held out. A fixed hash of the row id: the same every time.
IN_TRAINING_HALF = f"hash({quote_ident(ROW_ID)}) % 2 = 0"


def task_of(db: DatasetDB, target: str) -> str:
    """"classification", or "regression" for a numeric target with more than 20 distinct values."""
    col = column_view(db, target)
    if col.treatment != "numeric":
        return "classification"
    fin = f" FILTER (WHERE isfinite({col.number}))"
    # A sketch first (cheap on 10M rows); count exactly only when it lands near the threshold.
    d = int(db.rows(f"SELECT approx_count_distinct({col.number}){fin} FROM data")[0][0])
    if 10 < d < 40:
        d = int(db.rows(f"SELECT count(DISTINCT {col.number}){fin} FROM data")[0][0])
    return "regression" if d >= REGRESSION_MIN_DISTINCT else "classification"


def task_from(db, col: ColumnView, n_distinct: int, exact: bool) -> str:
    """task_of, from the distinct count a profile has already made (exact, or a sketch far from the threshold)."""
    if col.treatment != "numeric":
        return "classification"
    if not exact and 10 < n_distinct < 40:  # a sketch near the threshold: count exactly
        return task_of(db, col.name)
    return "regression" if n_distinct >= REGRESSION_MIN_DISTINCT else "classification"


def target_checks(db, tcol, tprof, task, cols, by_name, edges, id_like, n_rows, notes) -> list[DataWarning]:
    """Imbalance (classification) and leakage warnings; edges are each numeric column's quantiles."""
    # ID-like columns are left out: on held-out rows they score like the majority guess anyway, unless the
    # file is sorted by the target, and then it is the row order, not the column, that leaks.
    features = [(c, by_name[c.name], _leak_key(c, by_name[c.name], edges.get(c.name))) for c in cols
                if c.name != tcol.name and c.name not in id_like and _leak_candidate(c, by_name[c.name])]
    if task == "classification":
        if tprof.n_distinct > MAX_CLASSES:
            notes.append(f"target {tcol.name!r} has {tprof.n_distinct:,} classes: no imbalance or leakage check")
            return []
        return _classification_checks(db, tcol, features, n_rows)
    return _regression_checks(db, tcol, tprof, features, n_rows)


def _leak_candidate(c: ColumnView, p: ColumnProfile) -> bool:
    if p.n_distinct < 2:
        return False
    if c.treatment == "numeric":
        return bool(p.quantiles) or p.n_distinct <= LEAK_BINS
    # A feature with a value per row or two cannot generalize to held-out rows; skip its big GROUP BY.
    return c.treatment in ("categorical", "boolean") and p.n_distinct <= 0.5 * p.n


def _leak_key(c: ColumnView, p: ColumnProfile, qs: list | None) -> tuple[str, list | None]:
    """(a DOUBLE to look up by, the bin edges to cut it at or None): numbers are cut into quantile bins, other
    values are looked up by their hash (as DOUBLE so that all features unpivot together)."""
    if c.treatment != "numeric" or p.n_distinct <= LEAK_BINS or not qs:
        return f"CASE WHEN {c.ident} IS NOT NULL THEN CAST(hash({c.value}) AS DOUBLE) END", None
    return c.number, sorted({float(v) for v in qs if v is not None and math.isfinite(v)})


def _classification_checks(db, tcol, features, n_rows) -> list[DataWarning]:
    fin = f" AND isfinite({tcol.ident})" if tcol.is_float else ""
    where = f"{tcol.ident} IS NOT NULL{fin}"
    classes = db.rows(f"SELECT y, count(*) AS n, count_if(tr) AS n_tr FROM "
                      f"(SELECT {tcol.value} AS y, {IN_TRAINING_HALF} AS tr FROM data WHERE {where}) "
                      f"GROUP BY y ORDER BY n_tr DESC, y")
    out = []
    if len(classes) >= 2:
        counts = sorted(((int(n), y) for y, n, _ in classes), key=lambda t: -t[0])
        (n_max, y_max), (n_min, y_min) = counts[0], counts[-1]
        total = sum(n for n, _ in counts)
        ratio = n_max / n_min
        if ratio >= 5 or n_min / total < 0.05:
            out.append(DataWarning(
                "imbalance", tcol.name,
                f"target {shown(tcol.name)} is imbalanced: {shown(y_max)} has {n_max:,} rows, {shown(y_min)} "
                f"{n_min:,} (ratio {ratio:.1f}, minority {percent(n_min, total)})", ratio))
    n_test = sum(int(n) - int(n_tr) for _, n, n_tr in classes)
    if len(classes) < 2 or n_test < LEAK_MIN_TEST or not features:
        return out
    majority = classes[0][0]  # the most frequent class on the training half
    base = (int(classes[0][1]) - int(classes[0][2])) / n_test

    correct = _leak_scores(db, features, n_rows, "classification", tcol, where, majority)
    for c, _, _ in features:
        acc = correct.get(c.name, 0.0) / n_test
        # Nearly perfect alone, and at most half the error of always guessing the majority class.
        if acc >= 0.95 and (1 - acc) <= 0.5 * (1 - base):
            out.append(DataWarning(
                "leakage", c.name,
                f"{shown(c.name)} alone predicts {shown(tcol.name)} with {acc:.1%} held-out accuracy "
                f"(majority class: {base:.1%}): a very strong feature or a leak; check it is not derived from the "
                "target", acc))
    return out


def _regression_checks(db, tcol, tprof, features, n_rows) -> list[DataWarning]:
    if tprof.mean is None or not features:
        return []
    where = f"isfinite({tcol.number})"
    center = float(tprof.mean)  # a centred target keeps the sums of squares precise
    n_tr, s_tr, n_te, s_te, q_te = db.rows(
        f"SELECT count_if(tr), sum(y) FILTER (WHERE tr), count_if(NOT tr), sum(y) FILTER (WHERE NOT tr), "
        f"sum(y * y) FILTER (WHERE NOT tr) FROM (SELECT {IN_TRAINING_HALF} AS tr, {tcol.number} - ? AS y "
        f"FROM data WHERE {where})", [center])[0]
    if not n_tr or not n_te or n_te < LEAK_MIN_TEST:
        return []
    sst = q_te - s_te * s_te / n_te
    if sst <= 0:
        return []
    sse = _leak_scores(db, features, n_rows, "regression", tcol, where, s_tr / n_tr, center=center)
    out = []
    for c, _, _ in features:
        if c.name in sse:
            r2 = 1 - sse[c.name] / sst
            if r2 >= 0.95:
                out.append(DataWarning(
                    "leakage", c.name,
                    f"{shown(c.name)} alone predicts {shown(tcol.name)} with held-out R² {r2:.3f}: a very "
                    "strong feature or a leak; check it is not derived from the target", r2))
    return out


def _leak_scores(db, features, n_rows, task, tcol, where, fallback, center=0.0) -> dict[str, float]:
    """Per feature: held-out correct predictions (classification) or squared error (regression) of a lookup
    table fitted on the training half, per value or per quantile bin of the feature.

    Features are unpivoted into (feature, key) rows so one GROUP BY serves hundreds of them. A key seen in
    training predicts its most frequent class (mean target) there; an unseen key the fallback: the training
    majority class (mean).
    """
    short = n_rows <= sizing.LONG_MAX_ROWS

    def cost(f) -> float:
        keys = f[1].n_distinct if f[2][1] is None else LEAK_BINS + 1  # groups it adds to the GROUP BY
        return max(2 * n_rows / sizing.QUERY_BUDGET, n_rows / sizing.LONG_CELLS if short else 0.0,
                   keys / sizing.DISTINCT_BUDGET)

    out: dict[str, float] = {}
    for chunk in sizing.chunks(features, cost, sizing.LONG_MAX_COLUMNS):
        names = ", ".join(f'"{i}"' for i in range(len(chunk)))
        y = f"{tcol.value} AS y" if task == "classification" else f"{tcol.number} - ? AS y"
        head = [] if task == "classification" else [center]
        if short:
            # Bin after unpivoting: one expression for all features. A CASE per feature costs ~1 ms each to
            # set up, which dominated on thousands of columns.
            inner = ", ".join(f'{expr} AS "{i}"' for i, (_, _, (expr, _)) in enumerate(chunk))
            u = (f"SELECT tr, y, f, CASE WHEN v IS NULL OR cuts IS NULL THEN v "
                 f"ELSE len(list_filter(cuts, lambda e: e <= v)) END AS k "
                 f"FROM (SELECT * FROM (SELECT {IN_TRAINING_HALF} AS tr, {y}, {inner} FROM data WHERE {where}) "
                 f"UNPIVOT INCLUDE NULLS (v FOR f IN ({names}))) "
                 f"JOIN (SELECT unnest(?::VARCHAR[]) AS f, unnest(?::DOUBLE[][]) AS cuts) USING (f)")
            params = head + [[str(i) for i in range(len(chunk))], [cuts for _, _, (_, cuts) in chunk]]
        else:
            # Few features on many rows: bin each in the projection, then unpivot the keys.
            keys, params = [], list(head)
            for i, (_, _, (expr, cuts)) in enumerate(chunk):
                if cuts is None:
                    keys.append(f'{expr} AS "{i}"')
                else:
                    whens = " ".join(f"WHEN {expr} < ? THEN {j}" for j in range(len(cuts)))
                    keys.append(f'CAST(CASE WHEN {expr} IS NULL THEN NULL {whens} ELSE {len(cuts)} END AS DOUBLE) '
                                f'AS "{i}"')
                    params += cuts
            u = (f"SELECT * FROM (SELECT {IN_TRAINING_HALF} AS tr, {y}, {', '.join(keys)} FROM data "
                 f"WHERE {where}) "
                 f"UNPIVOT INCLUDE NULLS (k FOR f IN ({names}))")
        if task == "classification":
            sql = (f"WITH g AS (SELECT f, k, y, count_if(tr) AS n_tr, count_if(NOT tr) AS n_te FROM ({u}) "
                   f"GROUP BY f, k, y), "
                   f"r AS (SELECT f, y, n_te, row_number() OVER w AS rn, max(n_tr) OVER w AS best FROM g "
                   f"WINDOW w AS (PARTITION BY f, k ORDER BY n_tr DESC, y)) "
                   f"SELECT f, sum(CASE WHEN best > 0 THEN (CASE WHEN rn = 1 THEN n_te ELSE 0 END) "
                   f"WHEN y = ? THEN n_te ELSE 0 END) FROM r GROUP BY f")
        else:
            sql = (f"WITH g AS (SELECT f, k, count_if(tr) AS n_tr, sum(y) FILTER (WHERE tr) AS s_tr, "
                   f"count_if(NOT tr) AS n_te, coalesce(sum(y) FILTER (WHERE NOT tr), 0) AS s_te, "
                   f"coalesce(sum(y * y) FILTER (WHERE NOT tr), 0) AS q_te FROM ({u}) GROUP BY f, k) "
                   f"SELECT f, sum(q_te - 2 * m * s_te + n_te * m * m) FROM "
                   f"(SELECT *, CASE WHEN n_tr > 0 THEN s_tr / n_tr ELSE ? END AS m FROM g) GROUP BY f")
        for f, value in db.rows(sql, params + [fallback]):
            out[chunk[int(f)][0].name] = float(value or 0)
    return out
