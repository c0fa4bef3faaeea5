"""Time the recipe's checks on a user's model of about 1M parameters, and the exact batch-independence matrix (one
vectorized backward) against the one-gradient-per-example loop it replaces.

    python bench/checks.py                          # MLP 784-1024-256-10 (1.07M parameters), 4,096 rows, 3 repeats
    python bench/checks.py --batch 64 --repeats 5

Synthetic data: x [N, 784] float32 ~ N(0, 1), y = argmax(x @ W) over 10 classes (fixed seed). Each check is
timed on its own as run_all calls it (model_checks' public functions, the default Budget), then run_all whole.
The matrix: the same model, the same batch of B examples, the same random output weights, both in train mode:
  batched   one forward and ONE torch.autograd.grad(..., is_grads_batched=True) (probes.dependency, as the check)
  loop      one forward and B torch.autograd.grad calls, one per output row (what a hand-written check does)
Both matrices must be equal (they are the same numbers); the ratio is the loop's seconds over batched's, in the
same repeat (median over repeats), the batched path first on even repeats and second on odd ones.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from recipe_core.config import load_settings  # noqa: E402
from recipe_core.training import model_checks, probes  # noqa: E402

FEATURES, CLASSES = 784, 10


def log(*args) -> None:
    print(*args, flush=True)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU(),
                         nn.Linear(256, CLASSES))


def make_data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    w = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
    return x, (x @ w).argmax(axis=1).astype(np.int64)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# -- the matrix, two ways ----------------------------------------------------------------------------------------
def matrix_batched(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with probes.mode(model, True):
        matrix, batched = probes.batch_matrix(model, x)
    assert batched, "the vectorized backward fell back to the loop: the comparison would be meaningless"
    return matrix


def matrix_loop(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The same numbers, one backward per output row: row i = sum |d (out_i . r_i) / d x_j|."""
    with probes.mode(model, True):
        xg = x.detach().clone().requires_grad_(True)
        out = probes.forward(model, xg)
        r = torch.randn(out.shape, generator=torch.Generator().manual_seed(probes.RANDOM_SEED), dtype=out.dtype)
        b = len(x)
        rows = []
        for i in range(b):
            (g,) = torch.autograd.grad(out[i], xg, grad_outputs=r[i], retain_graph=i < b - 1)
            rows.append(g.abs().reshape(b, -1).sum(dim=1))
    return probes.scaled(torch.stack(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=model_checks.Budget().matrix_examples,
                    help="examples in the dependency matrix (default: the check's own, Budget.matrix_examples)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=load_settings().train_threads)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    x_np, y_np = make_data(args.rows)
    model = make_model()
    n_params = sum(p.numel() for p in model.parameters())
    budget = model_checks.Budget()
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP {FEATURES}-1024-256-{CLASSES}, "
        f"{n_params:,} parameters; {args.rows:,} rows; {budget}; load average {os.getloadavg()[0]:.2f}")

    x, y = model_checks.as_tensors(x_np, y_np)
    loss = "cross_entropy"
    run_all_seconds, per_check = [], {}
    for r in range(args.repeats):
        for name, fn in CHECKS.items():
            seconds, _ = timed(lambda fn=fn: fn(x, y, loss, budget))
            per_check.setdefault(name, []).append(seconds)
        seconds, (found, _) = timed(lambda: model_checks.run_all(make_model, x_np, y_np, loss=loss, budget=budget))
        run_all_seconds.append(seconds)
    log(f"\n{'check':22s} {'seconds':>8s}   repeats (s)   verdict of run_all")
    for name, secs in per_check.items():
        verdict = found.get(name)
        shown = "" if verdict is None else f"{ {True: 'green', False: 'RED', None: 'n/a'}[verdict.ok]}"
        log(f"{name:22s} {statistics.median(secs):8.2f}   " + " ".join(f"{s:.2f}" for s in secs) + f"   {shown}")
    log(f"{'run_all':22s} {statistics.median(run_all_seconds):8.2f}   "
        + " ".join(f"{s:.2f}" for s in run_all_seconds))

    xb = x[:args.batch]
    matrix_batched(model, xb), matrix_loop(model, xb)  # warm-up: vmap's first call traces
    batched_s, loop_s = [], []
    for r in range(args.repeats):
        order = [("batched", matrix_batched), ("loop", matrix_loop)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            seconds, matrix = timed(lambda fn=fn: fn(model, xb))
            (batched_s if name == "batched" else loop_s).append(seconds)
            if name == "batched":
                m_batched = matrix
            else:
                m_loop = matrix
    same = np.allclose(m_batched, m_loop, rtol=1e-4, atol=1e-6)
    ratio = statistics.median(lo / ba for lo, ba in zip(loop_s, batched_s))
    log(f"\nbatch-independence matrix, {args.batch} x {args.batch}, same model and batch:")
    for label, secs in (("batched (one is_grads_batched backward)", batched_s),
                        (f"loop ({args.batch} backward calls)", loop_s)):
        log(f"  {label:40s} {statistics.median(secs) * 1000:8.1f} ms   " + " ".join(f"{s * 1000:.1f}" for s in secs))
    log(f"  ratio loop / batched: {ratio:.2f}x; matrices equal: {'yes' if same else 'NO'} "
        f"(largest difference {np.abs(m_batched - m_loop).max():.2e})")
    log(f"load average after: {os.getloadavg()[0]:.2f}")


def _fresh(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return make_model()


# Each check as run_all calls it (the same rows, the same budget): a fresh model each time, the training checks
# build their own from the factory.
CHECKS = {
    "loss_at_init": lambda x, y, loss, b: model_checks.loss_at_init(
        _fresh(), x[:model_checks.INIT_ROWS], y[:model_checks.INIT_ROWS], loss, model_checks.TOLERANCE),
    "gradients": lambda x, y, loss, b: model_checks.gradients(
        _fresh(), x[:model_checks.GRADIENT_ROWS], y[:model_checks.GRADIENT_ROWS], loss),
    "batch_independence": lambda x, y, loss, b: model_checks.batch_independence(_fresh(), x, b.matrix_examples),
    "overfit_one_batch": lambda x, y, loss, b: model_checks.overfit_one_batch(
        make_model, x, y, loss, b.overfit_n, b.overfit_steps),
    "input_independent": lambda x, y, loss, b: model_checks.input_independent(make_model, x, y, loss, b.twin_steps),
    "lr_range": lambda x, y, loss, b: model_checks.lr_range(make_model, x, y, loss, b.lr_steps),
    "just_before_the_net": lambda x, y, loss, b: model_checks.batch_seen(
        _fresh(), x[:model_checks.SEEN_ROWS], y[:model_checks.SEEN_ROWS]),
}

if __name__ == "__main__":
    main()
