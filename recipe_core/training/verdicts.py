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
    "batch_independence": BatchIndependence, "capacity": Capacity, "reproducible": Reproducibility}


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
