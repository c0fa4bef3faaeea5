"""Settings from the environment, read once per call so tests can change them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from recipe_core.errors import BadInput


@dataclass(frozen=True)
class Settings:
    home: Path  # RECIPE_HOME: snapshots and the default SQLite store live here
    store_url: str  # RECIPE_STORE_URL: SQLAlchemy URL of the runs/labels/catalog store
    max_upload_bytes: int  # RECIPE_MAX_UPLOAD_MB: caps the upload and its decompressed size alike
    query_timeout_s: float = 20.0  # a user query running longer is interrupted
    duckdb_memory_limit: str = "256MB"  # per DuckDB database; keeps browsing 10M rows well under 500 MB
    duckdb_threads: int = 2  # the machines have 2 cores
    # RECIPE_TRAIN_THREADS: per training job. One by default: a small net's step gains nothing from a second thread,
    # and two jobs (or a job and the server) spinning OpenMP threads on 2 cores slow each other down many times over.
    train_threads: int = 1

    @property
    def snapshots_dir(self) -> Path:
        return self.home / "snapshots"


def load_settings(env: os._Environ | dict | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("RECIPE_HOME") or ".recipe").expanduser().resolve()
    store_url = env.get("RECIPE_STORE_URL") or f"sqlite:///{home / 'recipe.db'}"
    raw_mb = env.get("RECIPE_MAX_UPLOAD_MB") or "1024"
    try:
        max_mb = float(raw_mb)
    except ValueError:
        raise BadInput(f"RECIPE_MAX_UPLOAD_MB must be a number of megabytes, not {raw_mb!r}") from None
    if max_mb <= 0:
        raise BadInput(f"RECIPE_MAX_UPLOAD_MB must be positive, not {raw_mb!r}")
    raw_threads = env.get("RECIPE_TRAIN_THREADS") or "1"
    if not raw_threads.isdigit() or not 1 <= int(raw_threads) <= 256:
        raise BadInput(f"RECIPE_TRAIN_THREADS must be a whole number from 1 to 256, not {raw_threads!r}")
    return Settings(home=home, store_url=store_url, max_upload_bytes=int(max_mb * 1024 * 1024),
                    train_threads=int(raw_threads))


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
        steps_per_epoch = max(1, -(-n_train // self.batch_size))
        return max(5, min(2000, -(-self.MIN_STEPS // steps_per_epoch)))
