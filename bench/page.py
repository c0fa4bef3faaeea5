"""Is the Train page responsive while a job trains? Page render times idle and during a training job.

    python bench/page.py               # wine, 20 renders each
    python bench/page.py --renders 50

Renders the Train page through Streamlit's AppTest (the same script run a browser triggers), first with nothing
training, then while an MLP job trains in its own process (started as the page starts it: recipe_core.jobs). The
ratio is the median render time during training over the idle median, measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from recipe_core.config import TrainConfig, load_settings  # noqa: E402
from recipe_core.data import ingest  # noqa: E402
from recipe_core.tracking.store import Store  # noqa: E402
from recipe_core.training import jobs, runs  # noqa: E402


def log(*args) -> None:
    print(*args, flush=True)


def render_times(at: AppTest, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
        assert not at.exception, at.exception
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--renders", type=int, default=20)
    args = ap.parse_args()
    os.environ["RECIPE_HOME"] = tempfile.mkdtemp(prefix="recipe_bench_page_")
    settings = load_settings()
    store = Store(settings.store_url)
    wine = ingest.ingest_file(settings, store, ROOT / "sample_data" / "wine.csv")
    done = runs.execute(settings, store, runs.create(store, wine, "cultivar", TrainConfig(model="linear")).id)

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/train.py").run()
    at.sidebar.selectbox(key="w_target").select("cultivar").run()
    at.session_state["train_run"] = done.id  # show a finished run: checks, metrics and views render too
    render_times(at, 3)  # warm the caches

    idle = render_times(at, args.renders)
    job = runs.create(store, wine, "cultivar", TrainConfig(model="mlp", epochs=100_000, checks=False))
    proc = jobs.start(settings, store, job.id)
    while not store.metric_history([job.id], ["train_loss"]):  # wait until it trains
        time.sleep(0.2)
    busy = render_times(at, args.renders)
    steps_before = store.metric_history([job.id], ["train_loss"])[-1][2]
    jobs.cancel(store, job.id)
    proc.wait(60)

    log(f"Train page render, {args.renders} renders each (AppTest), 2 cores")
    log(f"  idle              median {statistics.median(idle) * 1000:7.0f} ms  max {max(idle) * 1000:7.0f} ms")
    log(f"  during training   median {statistics.median(busy) * 1000:7.0f} ms  max {max(busy) * 1000:7.0f} ms"
        f"  (the job reached step {steps_before:,})")
    log(f"  ratio             {statistics.median(busy) / statistics.median(idle):.2f}x the idle median")


if __name__ == "__main__":
    main()
