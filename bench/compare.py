"""Log many long runs through the Python API, then time what the Compare page does to draw them.

    python bench/compare.py                       # 100 runs x 100k steps into a fresh SQLite store
    python bench/compare.py --runs 20 --steps 50000
    python bench/compare.py --store postgresql+psycopg://postgres@127.0.0.1:54329/postgres   # a fresh database

Each run logs one metric (`loss`: a noisy decaying curve) at every step, with one spike of +50 at a random step.
  log           rc.start_run / run.log for every point (buffered, written in chunks), per run and in total
  log-plain     the naive store, for the ratio: one row per point, sqlite3 executemany into an indexed table
  fetch         store.histories for all runs (every stored point), as the page reads them
  fetch-plain   the naive store's read of the same points (SELECT step, value ... ORDER BY step), one run
                measured and scaled to all runs
  draw          chart.comparison_figure (MinMaxLTTB downsampling to 2,000 points a run, EMA after it, best
                points) and the figure's JSON, as sent to the browser
The targets (issue 5): drawn in under 1 s on the server, the figure under 5 MB, every run's spike visible.
"""
from __future__ import annotations

import argparse
import base64
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402

import recipe_core as rc  # noqa: E402
from recipe_core.compare.chart import ChartSpec, comparison_figure  # noqa: E402
from recipe_core.tracking.store import Store  # noqa: E402


def curve(seed: int, steps: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    loss = np.exp(-np.arange(steps) / (steps / 5)) + rng.normal(0, 0.02, steps) + 0.1
    spike = int(rng.integers(steps // 10, steps))
    loss[spike] += 50.0
    return loss, spike


def fresh_pg(url: str) -> str:
    name = "recipe_bench_" + uuid.uuid4().hex[:8]
    with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return url.rsplit("/", 1)[0] + "/" + name


def log_plain(path: Path, loss: np.ndarray) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS metrics (run_id TEXT, key TEXT, step INTEGER, value REAL, wall REAL)")
    conn.execute("CREATE INDEX IF NOT EXISTS by_run ON metrics (run_id, key, step)")
    now = time.time()
    with conn:
        conn.executemany("INSERT INTO metrics VALUES ('r', 'loss', ?, ?, ?)",
                         ((i, float(v), now) for i, v in enumerate(loss)))
    conn.close()
    return time.perf_counter() - start


def fetch_plain(path: Path) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT step, value FROM metrics WHERE run_id = 'r' AND key = 'loss' ORDER BY step").fetchall()
    np.array(rows)
    conn.close()
    return time.perf_counter() - start


def drawn_values(fig_json: str) -> dict[str, list[np.ndarray]]:
    """The y values the browser receives, by legend group (one per run when colouring by run)."""
    out: dict[str, list[np.ndarray]] = {}
    for trace in json.loads(fig_json)["data"]:
        y = trace.get("y")
        if isinstance(y, dict):  # plotly sends numpy arrays as base64 typed arrays
            y = np.frombuffer(base64.b64decode(y["bdata"]), y["dtype"])
        if y is not None:
            out.setdefault(trace.get("legendgroup", ""), []).append(np.asarray(y, dtype=float))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--store", help="a PostgreSQL server URL (a fresh database is made on it); default SQLite")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recipe_bench_"))
    url = fresh_pg(args.store) if args.store else f"sqlite:///{tmp / 'recipe.db'}"
    print(f"store: {url.split('@')[-1]}; {args.runs} runs x {args.steps:,} steps")

    ids, spikes, per_run = [], {}, []
    start = time.perf_counter()
    for i in range(args.runs):
        loss, spike = curve(i, args.steps)
        values = loss.tolist()
        t0 = time.perf_counter()
        with rc.start_run(name=f"run-{i:03d}", config={"lr": [1e-3, 3e-3][i % 2], "seed": i // 2},
                          store_url=url) as run:
            for step, value in enumerate(values):
                run.log(step, loss=value)
        per_run.append(time.perf_counter() - t0)
        ids.append(run.run_id)
        spikes[run.run_id] = loss[spike]
    total = time.perf_counter() - start
    plain = log_plain(tmp / "plain.db", curve(0, args.steps)[0])
    print(f"log          {np.median(per_run):.2f} s per run (median), {total:.1f} s for all "
          f"({args.runs * args.steps / total / 1e6:.2f} M points/s)")
    print(f"log-plain    {plain:.2f} s for one run; API/plain per run = {np.median(per_run) / plain:.2f}")

    store = Store(url)
    t0 = time.perf_counter()
    histories = store.histories(ids, "loss", ("step", "value"))  # what a chart against step reads
    fetch = time.perf_counter() - t0
    n_points = sum(len(h) for h in histories.values())
    fetch_one_plain = fetch_plain(tmp / "plain.db")
    print(f"fetch        {fetch:.3f} s for {n_points:,} points")
    print(f"fetch-plain  {fetch_one_plain:.3f} s for one run -> {fetch_one_plain * args.runs:.2f} s for all "
          f"(chunks are {fetch_one_plain * args.runs / fetch:.1f}x faster)")

    runs = [store.get_run(i) for i in ids]
    for group in (False, True):
        spec = ChartSpec(metric="loss", smoothing="ema", group_seeds=group)
        t0 = time.perf_counter()
        fig, counts = comparison_figure(spec, runs, histories)
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        fig_json = fig.to_json()
        serialised = time.perf_counter() - t0
        label = "draw-groups" if group else "draw"
        print(f"{label:<12} {built:.3f} s build + {serialised:.3f} s JSON; fetch + draw = "
              f"{fetch + built + serialised:.3f} s; figure {len(fig_json) / 1e6:.2f} MB; "
              f"{counts['shown']:,} of {counts['total']:,} points shown")
        if not group:
            # each run's raw (faded) trace carries its own spike: count the runs whose spike value is drawn
            drawn = drawn_values(fig_json)
            visible = sum(any(np.any(np.isclose(y, spikes[i], rtol=1e-5)) for y in drawn.get(f"run:{i}", [])) for i in ids)
            print(f"spikes       {visible} of {len(ids)} runs' spikes drawn")


if __name__ == "__main__":
    main()
