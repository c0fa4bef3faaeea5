"""The training loop: the batches it draws, the loss it reports per batch, where it stops, and the denormal
flush that keeps a near-zero loss fast; boosting grown in chunks is the same model as one fit."""
import copy

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from torch.nn import functional as F

from recipe_core.training import loop


def data(n=40, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    return X, (X[:, 0] > 0).long()


def test_each_step_reports_the_loss_of_its_own_batch_the_first_being_first_batch():
    X, y = data()
    model = torch.nn.Linear(3, 2)
    before = copy.deepcopy(model)
    seen = []
    loop.train_mlp(model, X, y, "classification", epochs=1, batch_size=16, lr=1e-2, seed=7,
                   on_step=lambda info: seen.append(info))
    first = loop.first_batch(len(X), 16, seed=7)
    assert len(first) == 16 and len(set(first.tolist())) == 16
    assert seen[0].loss.item() == pytest.approx(F.cross_entropy(before(X[first]), y[first]).item())
    assert [s.step for s in seen] == [1, 2, 3] and [s.epoch for s in seen] == [0, 0, 0]  # 16 + 16 + 8 rows
    assert not seen[0].loss.requires_grad  # detached: a hook cannot keep the graph alive


def test_an_epoch_sees_every_row_once_and_the_seed_fixes_the_order():
    X, y = data(n=10)
    rows = []

    class Spy(torch.nn.Linear):
        def forward(self, x):
            rows.extend(x[:, 0].tolist())
            return super().forward(x)

    loop.train_mlp(Spy(3, 2), X, y, "classification", epochs=1, batch_size=4, lr=1e-3, seed=1)
    assert sorted(rows) == sorted(X[:, 0].tolist())
    assert rows[:4] == X[loop.first_batch(10, 4, seed=1), 0].tolist()
    assert loop.first_batch(10, 4, seed=1).tolist() != loop.first_batch(10, 4, seed=2).tolist()


def test_on_epoch_returning_true_stops_the_training_there():
    X, y = data()
    calls = []

    def on_epoch(epoch, step):
        calls.append((epoch, step))
        return epoch == 2

    loop.train_mlp(torch.nn.Linear(3, 2), X, y, "classification", epochs=50, batch_size=20, lr=1e-2,
                   on_epoch=on_epoch)
    assert calls == [(0, 2), (1, 4), (2, 6)]  # two steps an epoch, and no epoch after the stop


def test_early_stopping_in_the_loop_keeps_the_best_epochs_weights():
    X, y = data()
    model = torch.nn.Linear(3, 2)
    fake_val = [1.0, 0.7, 0.5, 0.6, 0.65, 0.9, 0.95, 1.0]  # best after epoch 3
    stopper, weights = loop.EarlyStopping(patience=2), {}

    def on_epoch(epoch, step):
        weights[epoch + 1] = copy.deepcopy(model.state_dict())
        return stopper.update(epoch + 1, fake_val[epoch], model)

    loop.train_mlp(model, X, y, "classification", epochs=len(fake_val), batch_size=8, lr=0.1, on_epoch=on_epoch)
    assert (stopper.best_epoch, stopper.last_epoch) == (3, 5)
    stopper.restore(model)
    assert torch.equal(model.weight, weights[3]["weight"]) and not torch.equal(model.weight, weights[5]["weight"])


def test_the_loop_flushes_denormal_floats_to_zero():
    tiny = 1e-310  # a float64 denormal
    torch.set_flush_denormal(False)
    assert torch.tensor([tiny], dtype=torch.float64).item() != 0
    X, y = data(n=8)
    loop.train_mlp(torch.nn.Linear(3, 2), X, y, "classification", epochs=1, batch_size=8, lr=1e-3)
    assert torch.tensor([tiny], dtype=torch.float64).item() == 0  # Adam's vanishing moments stay fast


def test_mean_loss_is_over_all_rows_not_an_average_of_chunks(monkeypatch):
    X, y = data(n=10)
    model = torch.nn.Linear(3, 2)
    monkeypatch.setattr(loop, "EVAL_BATCH", 3)  # chunks of 3, 3, 3, 1: their plain average would weigh row 10 x3
    assert loop.mean_loss(model, X, y, "classification") == pytest.approx(F.cross_entropy(model(X), y).item())
    reg = loop.mean_loss(torch.nn.Linear(3, 1), X, X[:, 1], "regression")
    assert reg > 0 and model.training  # the model's mode is put back


def test_predict_gives_probabilities_or_values_in_eval_mode():
    X, _ = data(n=5)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.9), torch.nn.Linear(4, 3))
    p = loop.predict(net, X, "classification")
    assert p.shape == (5, 3) and p.sum(axis=1) == pytest.approx(np.ones(5))
    assert np.array_equal(p, loop.predict(net, X, "classification"))  # dropout off: the same twice
    assert loop.predict(net, X[:0], "classification").shape == (0,)


def test_boosting_grown_in_chunks_is_the_same_model_as_one_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    make = lambda: HistGradientBoostingClassifier(max_iter=25, early_stopping=False, warm_start=True,  # noqa: E731
                                                  random_state=0)
    chunks = []
    grown = loop.grow_boosting(make(), X, y, 10, chunks.append)
    assert chunks == [10, 20, 25]
    assert np.array_equal(grown.predict_proba(X), make().fit(X, y).predict_proba(X))
