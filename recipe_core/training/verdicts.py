"""What each recipe check says: ok (True, False, or None when it does not apply or cannot decide), one line, and
the numbers behind it. Stored with the run as plain JSON (to_json) and read back (read) without torch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class Verdict:
    ok: bool | None
    message: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> "Verdict":
        """Fields a run stored by older code lacks take their defaults; fields this code does not know are left."""
        known = {f.name for f in fields(cls)}
        return cls(**{"ok": None, "message": ""} | {k: v for k, v in value.items() if k in known})


@dataclass(frozen=True)
class LossAtInit(Verdict):
    expected: float | None = None  # the formula's loss at step 0
    measured: float | None = None
    tolerance: float | None = None  # relative
    loss: str | None = None  # cross_entropy, bce, mse, l1, huber (a user's own model); None for the app's models
    uninformed: float | None = None  # the loss of a model that ignores its input and predicts evenly (ln C, ...)
    bias: list | None = None  # "init well": the last-layer bias values that start at the prior (or target mean)
    advice: str = ""  # the init-well advice, when the classes are imbalanced or the target's mean is far from 0


@dataclass(frozen=True)
class OverfitOneBatch(Verdict):
    n: int = 0  # examples in the batch
    steps: int = 0
    final_loss: float | None = None
    threshold: float | None = None  # floor + "near zero"
    floor: float = 0.0  # the batch's irreducible loss: identical inputs with different labels
    n_ambiguous: int = 0
    n_distinct: int = 0
    labels: list | None = None
    predictions: list | None = None
    curve: list = field(default_factory=list)  # [step, loss]
    rows: list = field(default_factory=list)  # the training rows of the batch


@dataclass(frozen=True)
class InputIndependent(Verdict):
    real_val_loss: float | None = None
    twin_val_loss: float | None = None  # the same model trained on zeroed inputs
    real_train_loss: float | None = None
    twin_train_loss: float | None = None
    margin: float | None = None


@dataclass(frozen=True)
class BatchIndependence(Verdict):
    example: int | None = None  # whose output the gradient starts from
    batch: int | None = None
    other_inputs_reached: int | None = None
    max_other_gradient: float | None = None
    own_gradient: float | None = None
    # The exact check on a user's model: matrix[i][j] = |d output_i / d input_j| summed, scaled so the largest is 1
    matrix: list | None = None
    pairs: list = field(default_factory=list)  # [[output i, input j], ...] that mix (i != j), first ones only
    batch_norm: list = field(default_factory=list)  # BatchNorm layers in train mode: mixing that is expected


# A dependency matrix's cell above this (relative to its largest, which is 1) is a dependence; below it, float noise.
DEPENDENCE_THRESHOLD = 1e-6


def dependent_cells(matrix, future_only: bool) -> list[list[int]]:
    """The [i, j] cells of a dependency matrix that break independence: off the diagonal (a batch: output i on
    input j), or above it (causality: position t on a later input s). The probes judge by it, the pages mark it."""
    return [[i, j] for i, row in enumerate(matrix if matrix is not None else []) for j, v in enumerate(row)
            if (j > i if future_only else j != i) and v is not None and v > DEPENDENCE_THRESHOLD]


@dataclass(frozen=True)
class Gradients(Verdict):
    checked: int = 0  # parameters that require grad
    without: list = field(default_factory=list)  # names whose gradient is None or all zeros
    non_finite: list = field(default_factory=list)  # names whose gradient holds NaN or inf
    norms: dict = field(default_factory=dict)  # name -> gradient norm (the first parameters only)


@dataclass(frozen=True)
class Causality(Verdict):
    length: int | None = None  # positions T
    first_leak: list | None = None  # [output t, input s] with s > t, the first found; None when causal
    matrix: list | None = None  # T x T: matrix[t][s] = |d output_t / d input_s| (embeddings), largest 1


@dataclass(frozen=True)
class LrRange(Verdict):
    lrs: list = field(default_factory=list)  # exponentially growing learning rates, one per step
    losses: list = field(default_factory=list)  # the (smoothed) training loss after each step
    suggested: float | None = None  # the steepest fall of the smoothed loss, as fastai's and Lightning's finders
    steps: int = 0


@dataclass(frozen=True)
class BatchSeen(Verdict):
    """The first batch exactly as it entered the model (a forward pre-hook); images in the run's artifact."""
    shape: list = field(default_factory=list)
    dtype: str = ""
    min: float | None = None
    max: float | None = None
    nan: int = 0  # NaN (and inf) values in the batch
    channels: list = field(default_factory=list)  # [{"channel": c, "mean": m, "std": s}] (dim 1 of N x C x ...)
    images: int = 0  # images stored in the "batch_seen" artifact (N x C x H x W batches), 0 otherwise


@dataclass(frozen=True)
class Capacity(Verdict):
    widths: list = field(default_factory=list)
    train_losses: list = field(default_factory=list)
    init_losses: list = field(default_factory=list)
    best_fall: float | None = None
    min_fall: float | None = None
    steps: int | None = None
    rows: int | None = None


@dataclass(frozen=True)
class Reproducibility(Verdict):
    earlier_run: str | None = None
    differences: dict = field(default_factory=dict)  # metric -> [earlier, now]


KINDS: dict[str, type[Verdict]] = {
    "loss_at_init": LossAtInit, "input_independent": InputIndependent, "overfit_one_batch": OverfitOneBatch,
    "batch_independence": BatchIndependence, "capacity": Capacity, "reproducible": Reproducibility,
    "gradients": Gradients, "causality": Causality, "lr_range": LrRange, "just_before_the_net": BatchSeen}


def skipped(why: str) -> Verdict:
    return Verdict(None, why)


def to_json(found: dict[str, Verdict]) -> dict:
    return {name: verdict.to_json() for name, verdict in found.items()}


def read(stored: dict) -> dict[str, Verdict]:
    """A run's stored checks (RunRecord.checks) as verdicts, each of its own kind."""
    return {name: KINDS.get(name, Verdict).from_json(value) for name, value in (stored or {}).items()}


def of(stored: dict, name: str) -> Verdict:
    """One stored check, or a verdict saying it did not run (a run with the checks off)."""
    value = (stored or {}).get(name)
    return KINDS.get(name, Verdict).from_json(value if value is not None else {"message": "not run"})
