"""What a run leaves besides its metrics: the first batch as the net sees it, predictions over training, the
top-loss examples, the features used, and the validation predictions (npz, never a pickle).

Each view is a dataclass, stored as JSON (to_json) and read back by the page (read), without torch.
"""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from recipe_core.training import evaluation, features
from recipe_core.training.dataset import Data, shown_label

TOP_LOSSES = 20
BATCH_VIEW_MAX_FEATURES = 512


class _Stored:
    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict):
        """Fields a run stored by older code lacks take their defaults; unknown fields are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


@dataclass(frozen=True)
class BatchView(_Stored):
    """The first training batch, one entry per distinct input (its first row in the batch)."""
    rows: list  # each input's first row
    labels: list
    features: list  # names of the features shown (at most BATCH_VIEW_MAX_FEATURES)
    n_features: int
    values: list  # [input][feature shown], as the net receives them
    stats: dict  # per feature over the whole batch, repeats included: feature, mean, std, nan
    decoded: dict  # column -> each input's value in the column's own terms
    n_rows: list | None = None  # rows of the batch with each input (None: stored before duplicates were grouped)
    row_ids: list | None = None
    row_labels: list | None = None
    batch_rows: int | None = None


@dataclass(frozen=True)
class Dynamics(_Stored):
    """Predictions on the fixed validation batch, snapshot by snapshot."""
    rows: list
    labels: list
    classes: list
    snapshots: list  # [epoch or trees, predictions]
    n_rows: list | None = None  # validation rows with each input


@dataclass(frozen=True)
class TopLoss(_Stored):
    """One distinct validation input among the highest losses."""
    row: int  # the row of highest loss with this input (the Data page's link)
    label: str | float
    loss: float
    predicted: str | float
    p_label: float | None = None  # classification: the probability given to the label
    n_rows: int = 1  # validation rows with this input
    n_labels: int = 1  # their distinct labels: above 1, noise no model can fit

    def to_json(self) -> dict:
        out = asdict(self)
        if self.p_label is None:
            del out["p_label"]
        return out


@dataclass(frozen=True)
class FeatureSummary(_Stored):
    columns: list
    excluded: list
    id_like: list
    n_features: int
    classes: list
    task: str
    split: dict = field(default_factory=dict)  # counts per part, and train_used


def read(name: str, value):
    """A stored view (Store.get_json) as its dataclass; top_losses as a list of them; None stays None."""
    if value is None:
        return None
    if name == "top_losses":
        return [TopLoss.from_json(item) for item in value]
    return {"batch": BatchView, "dynamics": Dynamics, "features": FeatureSummary}[name].from_json(value)


def top_losses_frame(items: list[TopLoss]) -> pd.DataFrame:
    return pd.DataFrame([item.to_json() for item in items])


# -- making them ---------------------------------------------------------------------------------------
def feature_summary(data: Data) -> FeatureSummary:
    return FeatureSummary(columns=data.columns, excluded=data.excluded, id_like=data.id_like,
                          n_features=data.encoder.n_features_, classes=data.classes, task=data.task,
                          split=data.split.counts | {"train_used": len(data.rows_train)})


def batch_view(data: Data, order: np.ndarray) -> BatchView:
    """The first batch exactly as the net receives it (order: its positions in the training split, as the loop
    draws them), one entry per distinct input: rows, labels, values and decoded are each input's first row in the
    batch; n_rows, row_ids and row_labels the batch's rows that share it; stats are over the whole batch."""
    X = data.X_train[order]
    groups = features.input_groups(X)
    _, first = np.unique(groups, return_index=True)
    first = np.sort(first)  # batch order
    members = np.split(np.argsort(groups, kind="stable"), np.cumsum(np.bincount(groups))[:-1])
    shared = [members[g] for g in groups[first]]
    names = data.encoder.feature_names_
    keep = min(len(names), BATCH_VIEW_MAX_FEATURES)
    decoded = data.encoder.decode(X[first])
    return BatchView(
        rows=data.rows_train[order[first]].tolist(),
        labels=[shown_label(data, v) for v in data.y_train[order[first]]],
        n_rows=[len(m) for m in shared],
        row_ids=[data.rows_train[order[m]].tolist() for m in shared],
        row_labels=[[shown_label(data, v) for v in data.y_train[order[m]]] for m in shared],
        batch_rows=len(order),
        features=names[:keep],
        n_features=len(names),
        values=X[first, :keep].tolist(),
        stats=features.batch_stats(X, names).to_dict("list"),
        decoded={c: [_cell(v) for v in decoded[c]] for c in decoded.columns},
    )


def _cell(value) -> str | None:
    """A decoded value as text; numbers to 6 significant digits (float32 round trips add noise further out)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)


def dynamics(data: Data, snapshots: list) -> Dynamics:
    """The fixed validation batch's labels and the predictions at each snapshot, rounded for storage."""
    return Dynamics(
        rows=data.rows_val[data.fixed_val].tolist(),
        labels=[shown_label(data, v) for v in data.y_val[data.fixed_val]],
        n_rows=np.bincount(data.val_groups)[data.val_groups[data.fixed_val]].tolist(),  # rows with that input
        classes=data.classes,
        snapshots=[[at, np.asarray(p).round(5).tolist()] for at, p in snapshots])


def top_losses(data: Data, pred: np.ndarray, k: int = TOP_LOSSES) -> list[TopLoss]:
    """The k distinct validation inputs with the highest loss, worst first. Identical inputs get one prediction,
    so their rows make one entry, stood for by the row of highest loss."""
    losses = evaluation.per_example_loss(data.task, data.y_val, pred)
    groups = data.val_groups
    by_loss = np.argsort(-losses, kind="stable")
    _, worst_of_group = np.unique(groups[by_loss], return_index=True)
    worst = by_loss[np.sort(worst_of_group)][:k]
    n_rows = np.bincount(groups)
    n_labels = features.labels_per_group(groups, data.y_val)
    out = []
    for i in worst:
        if data.task == "classification":
            predicted, p_label = data.classes[int(pred[i].argmax())], float(pred[i, int(data.y_val[i])])
        else:
            predicted, p_label = float(pred[i]), None
        out.append(TopLoss(row=int(data.rows_val[i]), label=shown_label(data, data.y_val[i]), loss=float(losses[i]),
                           predicted=predicted, p_label=p_label, n_rows=int(n_rows[groups[i]]),
                           n_labels=int(n_labels[groups[i]])))
    return out


def predictions_npz(rows: np.ndarray, pred: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, rows=rows.astype(np.int64), pred=pred.astype(np.float32))
    return buf.getvalue()


def load_predictions(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:  # never unpickle
        return z["rows"], z["pred"]
