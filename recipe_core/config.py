"""Settings from the environment, read once per call so tests can change them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from recipe_core.errors import BadInput
from recipe_core.units import ceil_div

MB = 1 << 20


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    home: Path  # RECIPE_HOME: snapshots and the default SQLite store live here
    store_url: str  # RECIPE_STORE_URL: SQLAlchemy URL of the runs/labels/catalog store
    max_upload_bytes: int  # RECIPE_MAX_UPLOAD_MB: caps the upload and its decompressed size alike
    query_timeout_s: float = 20.0  # a user query running longer is interrupted (and its worker killed soon after)
    duckdb_memory_limit: str = "256MB"  # per DuckDB database; keeps browsing 10M rows well under 500 MB
    duckdb_threads: int = 2  # the machines have 2 cores
    # RECIPE_TRAIN_THREADS: per training job. One by default: a small net's step gains nothing from a second thread,
    # and two jobs (or a job and the server) spinning OpenMP threads on 2 cores slow each other down many times over.
    train_threads: int = 1
    # RECIPE_QUERY_MEMORY_MB: the address space of the process that runs a dataset's queries. DuckDB's memory_limit
    # does not bound string functions; this does, and the worker, not the server, dies. DuckDB with pyarrow maps
    # ~1.1 GB before its first query, so 2 GB leaves it ~0.9 GB to work in.
    query_memory_bytes: int = 2048 * MB
    # Ingestion caps (RECIPE_MAX_ROWS, RECIPE_MAX_CELLS, RECIPE_MAX_CELL_MB): a small compressed file can hold a
    # huge table or one enormous value; both are refused early, by name.
    max_rows: int = 20_000_000
    max_cells: int = 500_000_000
    max_cell_bytes: int = 16 * MB  # one value (a 10 MB text cell still fits)
    # RECIPE_MAX_COLUMNS: Excel's own width. DuckDB's sniffer and Parquet writer slow down faster than linearly with
    # width (20,000 columns 12-21 s; 100,000 columns 67 s and 1.4 GB; a line of 20M fields took the sniffer 18 GB).
    max_columns: int = 16_384
    # RECIPE_MAX_IMPORT_POINTS: metric points one import (TensorBoard, Lightning) may hold, ~30 bytes each.
    max_import_points: int = 20_000_000
    # RECIPE_EXECUTORS: where the pages may run tuning trials, by name, as the operator lists them:
    # "local" and "NAME=dask://HOST:PORT" (or a bare dask:// address, named by itself). A visitor never types one.
    executors: tuple[tuple[str, str], ...] = (("local", "local"),)
    # RECIPE_MAX_JOBS: training runs that execute at once on this machine; more wait, queued, for a free slot.
    max_jobs: int = 2
    # RECIPE_JOB_MEMORY_MB: the address space of each training process; its out-of-memory ends that run only.
    job_memory_bytes: int = 8192 * MB
    # True in a process that bounds itself (a CLI command that reads a dataset, a training job): its dataset
    # queries run on its own connection. The server leaves it False: its queries run in a bounded worker process.
    queries_in_process: bool = False
    # RECIPE_UNDO_HOURS: a deleted run, dataset, study or curve can be undone this long; a purge then removes it.
    undo_seconds: float = 24 * 3600.0
    # RECIPE_CHECK_TOLERANCE: how far above the formula a user's model may start (relative) before loss_at_init
    # is red. 10%: an untuned init lands within a few percent of ln C; logits scaled x50 land far above.
    check_tolerance: float = 0.10

    @property
    def snapshots_dir(self) -> Path:
        return self.home / "snapshots"

    def executor_address(self, name: str) -> str:
        """The address of an executor the operator listed, by its name; a one-line refusal for anything else."""
        for listed, address in self.executors:
            if name == listed:
                return address
        offered = ", ".join(n for n, _ in self.executors)
        raise BadInput(f"the executor {str(name)[:80]!r} is not one this server offers ({offered}); "
                       "the operator lists them in RECIPE_EXECUTORS")


def load_settings(env: os._Environ | dict | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("RECIPE_HOME") or ".recipe").expanduser().resolve()
    store_url = env.get("RECIPE_STORE_URL") or f"sqlite:///{home / 'recipe.db'}"
    max_mb = _number(env, "RECIPE_MAX_UPLOAD_MB", 1024, "a number of megabytes")
    raw_threads = env.get("RECIPE_TRAIN_THREADS") or "1"
    # isascii: "²" passes isdigit() and then fails int()
    if not (raw_threads.isascii() and raw_threads.isdigit()) or not 1 <= int(raw_threads) <= 256:
        raise BadInput(f"RECIPE_TRAIN_THREADS must be a whole number from 1 to 256, not {raw_threads!r}")
    max_jobs = int(_number(env, "RECIPE_MAX_JOBS", _cores(), "a whole number of jobs", whole=True))
    job_mb = _number(env, "RECIPE_JOB_MEMORY_MB", max(1024, 0.6 * _machine_memory() / MB / max_jobs),
                     "a number of megabytes")
    return Settings(
        home=home, store_url=store_url, max_upload_bytes=int(max_mb * MB), train_threads=int(raw_threads),
        query_memory_bytes=int(_number(env, "RECIPE_QUERY_MEMORY_MB", 2048, "a number of megabytes") * MB),
        max_rows=int(_number(env, "RECIPE_MAX_ROWS", Settings.max_rows, "a whole number of rows", whole=True)),
        max_cells=int(_number(env, "RECIPE_MAX_CELLS", Settings.max_cells, "a whole number of cells", whole=True)),
        max_cell_bytes=int(_number(env, "RECIPE_MAX_CELL_MB", 16, "a number of megabytes") * MB),
        max_columns=int(_number(env, "RECIPE_MAX_COLUMNS", Settings.max_columns, "a whole number of columns",
                                whole=True)),
        max_import_points=int(_number(env, "RECIPE_MAX_IMPORT_POINTS", Settings.max_import_points,
                                      "a whole number of points", whole=True)),
        executors=_executors(env.get("RECIPE_EXECUTORS") or "local"),
        max_jobs=max_jobs, job_memory_bytes=int(job_mb * MB),
        undo_seconds=_number(env, "RECIPE_UNDO_HOURS", 24, "a number of hours") * 3600.0,
        check_tolerance=_number(env, "RECIPE_CHECK_TOLERANCE", Settings.check_tolerance, "a fraction, e.g. 0.1"))


def _number(env, name: str, default: float, what: str, whole: bool = False) -> float:
    raw = env.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{name} must be {what}, not {raw!r}") from None
    if not value > 0 or value == float("inf") or (whole and not value.is_integer()):
        raise BadInput(f"{name} must be {what} above 0, not {raw!r}")
    return value


def _executors(raw: str) -> tuple[tuple[str, str], ...]:
    """RECIPE_EXECUTORS as (name, address) pairs: "local cluster=dask://10.0.0.5:8786" (spaces or commas)."""
    out = []
    for item in raw.replace(",", " ").split():
        name, _, address = item.partition("=") if "=" in item else (item, "", item)
        if address != "local" and not (address.startswith("dask://") and ":" in address[len("dask://"):]):
            raise BadInput(f"RECIPE_EXECUTORS: {item!r} is not 'local', NAME=dask://HOST:PORT or dask://HOST:PORT")
        if not name or any(n == name for n, _ in out):
            raise BadInput(f"RECIPE_EXECUTORS: every executor needs a name of its own ({item!r})")
        out.append((name, address))
    if not out:
        raise BadInput("RECIPE_EXECUTORS lists no executor; give at least 'local'")
    return tuple(out)


MODELS = ("prior", "linear", "gbm", "mlp")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run besides the data; saved whole with the run (nanoGPT style)."""
    model: str = "mlp"  # prior (scikit-learn Dummy*), linear (logistic / ridge), gbm (histogram boosting), mlp (torch)
    seed: int = 0  # every random choice of the run: init, batch order, dropout, the trees' subsampling
    task: str | None = None  # None: inferred from the target (a numeric target with > 20 values is regression)
    exclude: tuple[str, ...] | None = None  # columns left out; None: the ID-like ones
    # mlp
    width: int = 64  # hidden units per layer
    depth: int = 2  # hidden layers
    dropout: float = 0.0  # off at first: drive the training loss down before regularizing (recipe step 3)
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int | None = None  # None: enough epochs for about MIN_STEPS optimizer steps (at least 5)
    lr: float = 3e-4  # Adam's safe default; constant, no schedule
    bias_init: bool = True  # last-layer bias at the log class prior / the target mean (off: the hockey stick)
    patience: int | None = None  # early stopping: end after this many epochs without a better validation loss,
    #                              keeping the best epoch's weights (None: off, train every epoch)
    train_fraction: float = 1.0  # train on this share of the training split (a seeded subset): learning curves
    # linear and gbm
    l2: float = 1.0  # linear: ridge alpha, or 1/C of the logistic regression
    gbm_iterations: int = 200
    gbm_learning_rate: float = 0.1
    gbm_max_leaf_nodes: int = 31
    # features
    top_k: int = 20  # categorical values one-hot encoded; the rest share an "other" feature
    text_features: int = 256  # hashed bag-of-words size per text column
    checks: bool = True  # run the recipe's checks (they cost about one extra training run)

    MIN_STEPS = 2000  # not a field: with epochs=None, a run takes about this many optimizer steps

    def epochs_for(self, n_train: int) -> int:
        if self.epochs is not None:
            return self.epochs
        steps_per_epoch = max(1, ceil_div(n_train, self.batch_size))
        return max(5, min(2000, ceil_div(self.MIN_STEPS, steps_per_epoch)))
