"""Histograms of a model's gradients, weights and activations over training, per layer, as wandb.watch keeps them.

    watcher = Watcher(model, every=100, log="all")   # hooks on the model; nothing is computed between snapshots
    ...train...
    watcher.to_json()   # the "watch" artifact of a run: {"every", "bins", "series": {name: [[step, lo, hi, counts]]}}

A snapshot's step is the watched model's own count: its N-th forward call in training mode (weights, taken as they
enter that forward, and activations, its modules' outputs) or its parameter's N-th backward (gradients, the
gradient of that backward alone, as the tensor hook sees it, not the accumulated .grad). In a loop of one batch a
step this is the step. Forwards in eval mode (validation) are not counted, as in wandb.

Bounded whatever the run's length: at most MAX_SERIES series (spread evenly over the layers when a model has
more) and MAX_SNAPSHOTS snapshots a series; when a series fills up every other snapshot is dropped and the
series is taken half as often from then on, so what is kept stays evenly spaced from the first step to the last.
"""
from __future__ import annotations

import math

import torch

from recipe_core.errors import BadInput

BINS = 32
MAX_SERIES = 64
MAX_SNAPSHOTS = 200
KINDS = ("gradients", "parameters", "activations")
ALIASES = {"all": KINDS, "gradients": ("gradients",), "parameters": ("parameters",),
           "activations": ("activations",)}


def kinds_of(log) -> tuple[str, ...]:
    """"all" | "gradients" | "parameters" | "activations", or several joined by commas / given as a list."""
    parts = [log] if isinstance(log, str) else list(log) if isinstance(log, (list, tuple)) else None
    if parts is None:
        raise BadInput(f"log must be 'all', 'gradients', 'parameters' or 'activations', not {type(log).__name__}")
    found: list[str] = []
    for part in (p.strip() for text in parts for p in str(text).split(",")):
        if part not in ALIASES:
            raise BadInput(f"log must be 'all', 'gradients', 'parameters' or 'activations', not {part[:40]!r}")
        found += [k for k in ALIASES[part] if k not in found]
    if not found:
        raise BadInput("log names nothing to watch; give 'all', 'gradients', 'parameters' or 'activations'")
    return tuple(k for k in KINDS if k in found)


def histogram(tensor: torch.Tensor, bins: int = BINS) -> tuple[float, float, list[int], int]:
    """(lo, hi, counts, non-finite) of a tensor's finite values: lo and hi are their min and max, counts the values
    in each of `bins` equal bins between them (the last includes hi). All values equal: every one in the middle bin.
    No finite value at all: lo = hi = 0 and zero counts; the non-finite ones are counted apart."""
    values = tensor.detach().flatten().float()
    finite = values[torch.isfinite(values)]
    nonfinite = int(values.numel() - finite.numel())
    if finite.numel() == 0:
        return 0.0, 0.0, [0] * bins, nonfinite
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:
        counts = [0] * bins
        counts[bins // 2] = int(finite.numel())
        return lo, hi, counts, nonfinite
    counts = torch.histc(finite, bins=bins, min=lo, max=hi).round().to(torch.int64).tolist()
    return lo, hi, counts, nonfinite


def spread(names: list[str], at_most: int) -> list[str]:
    """At most at_most of names, evenly spaced, the first and the last always among them."""
    if len(names) <= at_most:
        return names
    if at_most <= 1:
        return names[:at_most]
    picks = sorted({round(i * (len(names) - 1) / (at_most - 1)) for i in range(at_most)})
    return [names[i] for i in picks]


class Series:
    """One histogram over steps, thinned in place when it fills up."""

    def __init__(self, every: int):
        self.every = every  # grows x2 each time the series is thinned
        self.snapshots: list[list] = []
        self.nonfinite: list[list[int]] = []

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def add(self, step: int, tensor: torch.Tensor) -> None:
        lo, hi, counts, bad = histogram(tensor)
        self.snapshots.append([int(step), lo, hi, counts])
        if bad:
            self.nonfinite.append([int(step), bad])
        if len(self.snapshots) > MAX_SNAPSHOTS:
            self.every *= 2
            self.snapshots = [s for s in self.snapshots if s[0] % self.every == 0]
            self.nonfinite = [s for s in self.nonfinite if s[0] % self.every == 0]


class Hook:
    """One of the watch's hooks: a deepcopy of the model shares it rather than copying the watch with it, and it
    pickles as a hook that does nothing, so torch.save(model) of a watched model works and loads without it."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def __deepcopy__(self, _memo):
        return self

    def __reduce__(self):
        return _inert_hook, ()


def _inert_hook() -> Hook:
    return Hook(_nothing)


def _nothing(*_args) -> None:
    return None


class Watcher:
    """The hooks on one model and the histograms they took; remove() takes the hooks off."""

    def __init__(self, model, every: int = 100, log="all"):
        if not isinstance(model, torch.nn.Module):
            raise BadInput(f"watch needs a torch.nn.Module, not {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise BadInput(f"every must be a whole number of steps >= 1, not {str(every)[:40]!r}")
        self.model, self.every, self.kinds = model, every, kinds_of(log)
        self.series: dict[str, Series] = {}
        self.forwards = 0  # training-mode forward calls of the whole model
        self.skipped = 0  # layers left out to stay under MAX_SERIES
        self.dirty = False  # snapshots taken since the last to_json
        self.step: int | None = None  # the forward being run, while the model runs in training mode
        self.handles: list = []
        self._hook(self._chosen())

    def _chosen(self) -> dict[str, list[str]]:
        """Which parameters and modules get a series: all of them, or an even spread when there are too many."""
        share = MAX_SERIES // len(self.kinds)
        params = [n for n, p in self.model.named_parameters() if p.requires_grad or "parameters" in self.kinds]
        grads = [n for n, p in self.model.named_parameters() if p.requires_grad]
        leaves = [n or type(self.model).__name__ for n, m in self.model.named_modules() if not list(m.children())]
        candidates = {"gradients": grads, "parameters": params, "activations": leaves}
        chosen = {kind: spread(candidates[kind], share) for kind in self.kinds}
        self.skipped = sum(len(candidates[k]) - len(chosen[k]) for k in self.kinds)
        return chosen

    def _hook(self, chosen: dict[str, list[str]]) -> None:
        params = dict(self.model.named_parameters())
        # Each hook looks at which module called it: a deepcopy of the model (the checks' twins) shares the hooks but
        # its modules are new objects, so its forwards are not counted.
        on_forward = Hook(lambda module, _inputs: self._on_forward(module))
        self.handles.append(self.model.register_forward_pre_hook(on_forward))
        for name in chosen.get("parameters", []):
            self.series[f"parameters/{name}"] = Series(self.every)
        for name in chosen.get("gradients", []):
            series = self.series[f"gradients/{name}"] = Series(self.every)
            self.handles.append(params[name].register_hook(Hook(self._gradient_hook(series))))
        modules = {n or type(self.model).__name__: m for n, m in self.model.named_modules()}
        for name in chosen.get("activations", []):
            series = self.series[f"activations/{name}"] = Series(self.every)
            self.handles.append(modules[name].register_forward_hook(Hook(self._activation_hook(series, modules[name]))))
        self.params = {name: params[name] for name in chosen.get("parameters", [])}
        self.handles.append(self.model.register_forward_hook(  # last: after the root's own activation hook
            Hook(lambda module, _inputs, _output: self._after_forward(module))))
        self.backwards = {id(s): 0 for s in self.series.values()}

    def _on_forward(self, module) -> None:
        if module is not self.model:
            return  # a copy of the model
        self.step = None
        if not module.training:
            return
        self.step, self.forwards = self.forwards, self.forwards + 1
        with torch.no_grad():
            for name, param in self.params.items():
                series = self.series[f"parameters/{name}"]
                if series.due(self.step):
                    series.add(self.step, param)
                    self.dirty = True

    def _after_forward(self, module) -> None:
        if module is self.model:
            self.step = None  # a submodule called on its own later is not part of this forward

    def _gradient_hook(self, series: Series):
        def hook(grad):
            step = self.backwards[id(series)]
            self.backwards[id(series)] = step + 1
            if series.due(step):
                series.add(step, grad)
                self.dirty = True
            return None  # the gradient goes on unchanged

        return hook

    def _activation_hook(self, series: Series, watched):
        def hook(module, _inputs, output):
            step = self.step
            tensor = _first_tensor(output) if module is watched else None
            if step is not None and tensor is not None and series.due(step):
                series.add(step, tensor)
                self.dirty = True

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def to_json(self) -> dict:
        """The "watch" artifact: only series with at least one snapshot."""
        self.dirty = False
        out = {"every": self.every, "bins": BINS, "series": {}, "nonfinite": {}, "skipped": self.skipped}
        for name, series in self.series.items():
            if series.snapshots:
                out["series"][name] = [[s[0], _finite(s[1]), _finite(s[2]), list(s[3])] for s in series.snapshots]
            if series.nonfinite:
                out["nonfinite"][name] = [list(s) for s in series.nonfinite]
        return out


def _first_tensor(output):
    """A module's output, or the first tensor of a tuple/list/dict output (an LSTM's, a HF model's)."""
    if isinstance(output, torch.Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else ()
    return next((item for item in items if isinstance(item, torch.Tensor)), None)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
