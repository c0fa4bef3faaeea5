"""A tiny causal transformer predicting the next character of the Zen of Python, checked by the recipe.

    python examples/char_transformer.py                # the checks through the API, causality included
    python -m recipe_core check examples/char_transformer.py:make_model --data zen.npz --causal   # save_data()

The text ships with Python (the `this` module), so nothing is downloaded. data() returns (x, y): x int64 [N, T]
character ids, y int64 [N, T] the next character of each position; the model returns logits [N, T, vocab].
"""
from __future__ import annotations

import contextlib
import io
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: recipe_core beside examples/

CONTEXT = 16  # characters a window holds


def zen() -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the poem; stdout stays the caller's
        import this
    return "".join(this.d.get(c, c) for c in this.s)


TEXT = zen()
VOCAB = sorted(set(TEXT))  # 45 characters


class Block(nn.Module):
    """Pre-norm attention and MLP. The causal mask is what makes position t see only positions <= t."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, h):
        n, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        future = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)
        attended = scores.masked_fill(future, float("-inf")).softmax(-1) @ v  # N x heads x T x d/heads
        h = h + self.out(attended.transpose(1, 2).reshape(n, t, d))
        return h + self.mlp(self.norm2(h))


class CharTransformer(nn.Module):
    """One pre-norm block, 48 wide, 4 heads: ~34k parameters, its checks in seconds on one CPU thread."""

    def __init__(self, vocab: int = len(VOCAB), d: int = 48, heads: int = 4, layers: int = 1,
                 context: int = CONTEXT):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)
        # A small head: the logits start near 0, so the step-0 loss starts at ln(vocab) (GPT-2 does the same).
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        h = self.tokens(x) + self.positions(torch.arange(x.shape[1], device=x.device))
        return self.head(self.norm(self.blocks(h)))


def make_model() -> nn.Module:
    return CharTransformer()


def data(stride: int = 2) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([VOCAB.index(c) for c in TEXT], dtype=np.int64)
    starts = np.arange(0, len(ids) - CONTEXT - 1, stride)
    windows = np.stack([ids[s:s + CONTEXT + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:]  # y is x shifted by one: the next character


def save_data(path: str = "zen.npz") -> str:
    x, y = data()
    np.savez(path, x=x, y=y)
    return path


if __name__ == "__main__":
    import recipe_core as rc

    torch.set_num_threads(1)
    x, y = data()
    report = rc.check_model(make_model, x, y, loss="cross_entropy", causal=True, name="char transformer")
    print(report)
    print(f"run {report.run_id} in the store: open it on the Compare page")
    sys.exit(0 if report.ok else 1)
