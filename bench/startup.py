"""Start-up of the CLI: each command's wall time against a bare process doing only its libraries' part.

    python bench/startup.py                      # datasets, runs, labels summary; a query on 10M rows
    python bench/startup.py --rows 1000000 --runs 9

A temporary RECIPE_HOME gets the wine sample and a generated table (cached in bench/out/), both ingested with
`python -m recipe_core ingest`. Then, each a fresh process (median of the runs, interleaved so that load on the
machine hits all alike):
  datasets --json, runs --json, labels summary     against python -c "import duckdb, sqlalchemy, pandas"
  query BIG --where ... --sort ... --desc --json   against python -c with DuckDB alone running the same count and
  query BIG --json (page 0, file order)            SELECT on the snapshot Parquet file, with the CLI's threads
Targets: ratio <= 1.5; and no command here loads torch, sklearn or optuna (shown per command).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
WINE = ROOT / "sample_data" / "wine.csv"
HEAVY = ("torch", "sklearn", "optuna")
BARE_IMPORTS = "import duckdb, sqlalchemy, pandas"
WHERE = "price > 50000"


def log(*args) -> None:
    print(*args, flush=True)


def generate_parquet(n_rows: int) -> Path:
    """n_rows x 5 columns (integer, float, small integer, category, text), made by DuckDB once and cached."""
    import duckdb

    path = OUT / f"startup_{n_rows}.parquet"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    cities = "['Paris', 'Berlin', 'Lyon', 'Rome', 'Oslo', 'Madrid', 'Lisbon', 'Vienna', 'Prague', 'Dublin']"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT range AS id, round((hash(range) % 10000000) / 100.0, 2) AS price,
                               (hash(range * 3) % 90)::INTEGER AS age,
                               {cities}[1 + (hash(range * 7) % 10)::BIGINT] AS city,
                               'item ' || (hash(range * 11) % 100000)::VARCHAR AS title
                        FROM range({n_rows})) TO '{path}.part' (FORMAT parquet)""")
    con.close()
    os.replace(f"{path}.part", path)
    return path


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "recipe_core", *argv]


def run_cli_json(env: dict, *argv: str):
    proc = subprocess.run(cli(*argv, "--json"), cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def heavy_modules(env: dict, argv: list[str]) -> list[str]:
    """The heavy libraries a command loads, from python -X importtime (every module a process imports)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    names = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return [m for m in HEAVY if m in names]


def plain_duckdb(parquet: Path, threads: int, sqls: list[str]) -> list[str]:
    code = (f"import duckdb; con = duckdb.connect(config={{'threads': {threads}}}); "
            + "; ".join(f"print(con.execute({sql!r}).fetchall())" for sql in sqls))
    return [sys.executable, "-c", code]


def medians(commands: list[tuple[str, list[str]]], env: dict, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name, _ in commands}
    for i in range(runs):
        order = commands if i % 2 == 0 else commands[::-1]
        for name, argv in order:
            start = time.perf_counter()
            subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="recipe_startup_"))
    env = {**os.environ, "RECIPE_HOME": str(home)}
    env.pop("RECIPE_STORE_URL", None)
    try:
        parquet = generate_parquet(args.rows)
        start = time.perf_counter()
        run_cli_json(env, "ingest", str(WINE), "--name", "wine")
        big = run_cli_json(env, "ingest", str(parquet), "--name", "big")
        log(f"home: wine and {big['n_rows']:,} rows x {len(big['columns'])} columns ingested with the CLI "
            f"in {time.perf_counter() - start:.1f} s")

        sys.path.insert(0, str(ROOT))
        from recipe_core.config import load_settings
        from recipe_core.data.snapshot import snapshot_path
        from recipe_core.tracking.store import Store

        settings = load_settings(env)
        snap = snapshot_path(settings, Store(settings.store_url).get_dataset(big["id"]))
        scan = f"read_parquet('{snap}')"
        bare = [sys.executable, "-c", BARE_IMPORTS]
        startup = [("datasets --json", cli("datasets", "--json")),
                   ("runs --json", cli("runs", "--json")),
                   ("labels summary --json", cli("labels", "summary", "wine", "--target", "cultivar", "--json"))]
        queries = [
            (f"query --where '{WHERE}' --sort price --desc",
             cli("query", "big", "--where", WHERE, "--sort", "price", "--desc", "--json"),
             plain_duckdb(snap, settings.duckdb_threads, [
                 f"SELECT count(*) FROM {scan} WHERE {WHERE}",
                 f"SELECT * FROM {scan} WHERE {WHERE} ORDER BY price DESC NULLS LAST LIMIT 50"])),
            ("query (page 0, file order)", cli("query", "big", "--json"),
             plain_duckdb(snap, settings.duckdb_threads, [f"SELECT count(*) FROM {scan}",
                                                          f"SELECT * FROM {scan} LIMIT 50"])),
        ]
        commands = [("bare", bare), *startup]
        for name, app, plain in queries:
            commands += [(name, app), (f"plain: {name}", plain)]
        log(f"machine: {os.cpu_count()} cores; median of {args.runs} runs, interleaved; DuckDB threads "
            f"{settings.duckdb_threads}")
        t = medians(commands, env, args.runs)

        log(f"\n{'command':52s} {'s':>6s} {'plain s':>8s} {'ratio':>6s}  heavy libraries loaded")
        log(f"{'bare: ' + BARE_IMPORTS:52s} {t['bare']:6.2f}")
        for name, argv in startup:
            heavy = ", ".join(heavy_modules(env, argv)) or "none"
            log(f"{name:52s} {t[name]:6.2f} {t['bare']:8.2f} {t[name] / t['bare']:6.2f}  {heavy}")
        for name, app, _ in queries:
            heavy = ", ".join(heavy_modules(env, app)) or "none"
            plain = t[f"plain: {name}"]
            log(f"{name:52s} {t[name]:6.2f} {plain:8.2f} {t[name] / plain:6.2f}  {heavy}")
        log("target: ratio <= 1.5, heavy libraries: none")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
