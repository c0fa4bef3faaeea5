"""Time the app's MLP training loop against a plain hand-written torch loop on the same model and data.

    python bench/train.py                           # 1M rows x 30 features, batch 256, 1 epoch, 3 repeats
    python bench/train.py --rows 200000 --repeats 2

Synthetic 3-class data (y = argmax(X @ W + noise), fixed seed, in memory). Every variant trains the same MLP
(recipe_core.models.make_mlp, TrainConfig defaults: width 64, depth 2, same seed, so the same initial weights)
with Adam at lr 3e-4 over the same shuffled batches. Only the training loop is timed, model building is not.
  app          recipe_core.training.loop.train_mlp with the hook of fit.fit_mlp (fit.LossLogger), logged
               through a real fit.Recorder into a real SQLite Store (flushed at most once a second)
  plain        a hand-written loop: randperm per epoch, X[idx] batches, backward, fused Adam (as the app)
  plain-adam   the same loop with the default (not fused) Adam, for reference
  dataloader   TensorDataset + DataLoader(shuffle=True, batch_size), fused Adam, for reference
Neither loop runs the per-epoch validation pass (the app's on_epoch hook only sets the progress here), so both
do the same work. Median of the repeats; the variant order is reversed on every other repeat so that drift on
the machine does not favour one side. The ratio is the variant's throughput over plain's, in the same repeat
(median over repeats); target: app >= 0.95. On a shared 2-core machine one repeat of the same loop varies by
10-20%, so resolving a few percent takes more repeats (--repeats 9) on an otherwise idle machine.
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

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from recipe_core.config import TrainConfig, load_settings  # noqa: E402
from recipe_core.tracking.records import RunRecord, new_id  # noqa: E402
from recipe_core.tracking.store import Store  # noqa: E402
from recipe_core.training import fit  # noqa: E402
from recipe_core.training.loop import loss_fn, mean_loss, train_mlp  # noqa: E402
from recipe_core.training.models import make_mlp  # noqa: E402

TASK, N_CLASSES = "classification", 3


def log(*args) -> None:
    print(*args, flush=True)


def make_data(rows: int, features: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, features, generator=g)
    W = torch.randn(features, N_CLASSES, generator=g) / features ** 0.5
    y = (X @ W + 0.5 * torch.randn(rows, N_CLASSES, generator=g)).argmax(dim=1)
    return X, y


def fresh_model(config: TrainConfig, X: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    return make_mlp(config, X.shape[1], TASK, y.numpy(), N_CLASSES)


# -- the loops: each returns (seconds, the last batch's loss, the trained model) ----------------------------
def app_loop(config: TrainConfig, X, y, store: Store):
    run_id = new_id()
    store.add_run(RunRecord(id=run_id, name="bench", model="mlp", config={}))
    rec = fit.Recorder(store, run_id)
    model = fresh_model(config, X, y)
    # The on_step hook of fit.fit_mlp itself; fit_mlp is not called because it would also time its full-data
    # loss at init and the validation passes, which are not the loop.
    epochs = config.epochs_for(len(X))
    on_step = fit.LossLogger(rec, epochs * max(1, -(-len(X) // config.batch_size)))

    def on_epoch(epoch: int, step: int) -> None:
        rec.progress = (epoch + 1) / epochs  # the validation pass of fit_mlp is left out (see the docstring)

    # The hooks' own time, measured inside the loop (two clock reads a step, well under 1 ms an epoch): unlike
    # the ratio it does not drown in the machine's noise.
    last, in_hook, flushes, flush = [None], [0.0], [], rec.flush

    def timed_step(info) -> None:
        t = time.perf_counter()
        on_step(info)
        in_hook[0] += time.perf_counter() - t
        last[0] = info.loss

    def timed_flush() -> None:
        t = time.perf_counter()
        flush()
        flushes.append(time.perf_counter() - t)

    rec.flush = timed_flush
    start = time.perf_counter()
    train_mlp(model, X, y, TASK, epochs=epochs, batch_size=config.batch_size, lr=config.lr,
              weight_decay=config.weight_decay, seed=config.seed, on_step=timed_step, on_epoch=on_epoch)
    seconds = time.perf_counter() - start
    stored = len(store.metric_history([run_id]))
    flush()  # what the run writes after training anyway; untimed
    return seconds, float(last[0]), model, (
        f"hooks {in_hook[0] * 1000:.0f} ms ({in_hook[0] / seconds:.1%}), of which {len(flushes)} Recorder flushes "
        f"{sum(flushes) * 1000:.0f} ms; {stored} points stored (one per {on_step.every} steps)")

def plain_loop(config: TrainConfig, X, y, fused: bool = True):
    model = fresh_model(config, X, y)
    fn = loss_fn(TASK)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=fused)
    generator = torch.Generator().manual_seed(config.seed)
    n, bs = len(X), config.batch_size
    start = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            loss = fn(model(X[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start, float(loss.detach()), model, ""


def dataloader_loop(config: TrainConfig, X, y):
    model = fresh_model(config, X, y)
    fn = loss_fn(TASK)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    loader = DataLoader(TensorDataset(X, y), batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed))
    start = time.perf_counter()
    for _ in range(config.epochs):
        for xb, yb in loader:
            loss = fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start, float(loss.detach()), model, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=load_settings().train_threads,
                    help="torch threads; default: a training job's (RECIPE_TRAIN_THREADS, 1)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)  # as a training job (RECIPE_TRAIN_THREADS, default 1)
    torch.set_flush_denormal(True)  # train_mlp sets it for the whole process: here before any loop, for all alike
    config = TrainConfig(batch_size=args.batch, epochs=args.epochs)
    start = time.perf_counter()
    X, y = make_data(args.rows, args.features)
    log(f"data: {args.rows:,} rows x {args.features} features, {N_CLASSES} classes "
        f"(shares {', '.join(f'{c:.2f}' for c in torch.bincount(y).div(len(y)).tolist())}) "
        f"in {time.perf_counter() - start:.1f} s")
    steps = args.epochs * -(-args.rows // args.batch)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP width {config.width} depth "
        f"{config.depth}, Adam lr {config.lr:g}; batch {args.batch}, {args.epochs} epoch(s) = {steps:,} steps; "
        f"median of {args.repeats} repeats; load average {os.getloadavg()[0]:.2f}")
    busy = os.getloadavg()[0] > 1.0

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/recipe.db")
        variants = {
            "app": lambda: app_loop(config, X, y, store),
            "plain": lambda: plain_loop(config, X, y, fused=True),
            "plain-adam": lambda: plain_loop(config, X, y, fused=False),
            "dataloader": lambda: dataloader_loop(config, X, y),
        }
        # Warm-up (thread pool, allocator, the store's first connection) so the first timed variant pays nothing.
        small = min(len(X), 20 * args.batch)
        app_loop(TrainConfig(batch_size=args.batch, epochs=1), X[:small], y[:small], store)
        plain_loop(TrainConfig(batch_size=args.batch, epochs=1), X[:small], y[:small])

        seconds = {name: [] for name in variants}
        results = {}
        for r in range(args.repeats):
            names = list(variants) if r % 2 == 0 else list(variants)[::-1]
            for name in names:
                secs, last_loss, model, note = variants[name]()
                seconds[name].append(secs)
                results[name] = (last_loss, model, note)
        store.engine.dispose()

    # Another process on the 2 cores slows a 2-thread loop many times over: the load and each repeat are shown
    # so that a disturbed run is seen as one.
    load = os.getloadavg()[0]
    log(f"\nload average after: {load:.2f} (this run alone adds up to 2); ratio: throughput over plain's in the "
        f"same repeat" + ("\nWARNING: the machine was busy, the times are not reliable" if busy or load > 3 else ""))
    log(f"{'loop':12s} {'seconds':>8s} {'samples/s':>11s} {'ratio':>6s}   repeats (s)")
    for name, secs in seconds.items():
        ratio = statistics.median(p / s for p, s in zip(seconds["plain"], secs))
        med = statistics.median(secs)
        note = results[name][2]
        log(f"{name:12s} {med:8.2f} {args.epochs * args.rows / med:11,.0f} {ratio:6.3f}   "
            + " ".join(f"{s:.2f}" for s in secs) + (f"   {note}" if note else ""))
    app_ratio = statistics.median(p / s for p, s in zip(seconds["plain"], seconds["app"]))
    log(f"app within 5% of plain: {'yes' if app_ratio >= 0.95 else 'NO'} (ratio {app_ratio:.3f}, target >= 0.95)")

    # Same init, same batch order, same fused Adam: app and plain should train exactly the same weights.
    # plain-adam rounds differently; the DataLoader draws a base seed from the generator before its permutation,
    # so it sees another batch order.
    log("\nfinal training loss (last batch / mean over all rows, after training):")
    for name, (last_loss, model, _) in results.items():
        log(f"  {name:12s} {last_loss:.6f} / {mean_loss(model, X, y, TASK):.6f}")
    same = all(torch.equal(a, b) for a, b in zip(results["app"][1].state_dict().values(),
                                                 results["plain"][1].state_dict().values()))
    log(f"app and plain weights identical: {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
