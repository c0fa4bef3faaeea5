"""The checks on a user's own model (training/model_checks.py, probes.py, model_losses.py): one deliberately
broken model per check goes red, named where it matters; correct models on messy data stay green; the exact
batch matrix against a per-example gradient loop; each loss's formula against a brute-force value."""
import json
import math

import numpy as np
import own_models as om
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from recipe_core.errors import BadInput
from recipe_core.training import model_checks as mc
from recipe_core.training import model_losses as ml
from recipe_core.training import probes

SMALL = mc.Budget(overfit_steps=300, twin_steps=200, lr_steps=60, rows=512)


def tensors(x, y):
    return mc.as_tensors(x, y)


def messy_classes(n=240, seed=0):
    """Imbalanced classes, 10% noisy labels, and the first 30 rows duplicated (some with another label)."""
    x, y = om.blobs(n=n, c=3, weights=[0.7, 0.2, 0.1], noise=0.1, seed=seed)
    x = np.concatenate([x, x[:30]])
    y = np.concatenate([y, np.roll(y[:30], 1)])
    return x, y


# -- one broken model per check ------------------------------------------------------------------------------------
def test_a_model_that_subtracts_the_batch_mean_mixes_examples_and_names_the_pairs():
    x, _ = tensors(*om.blobs())
    torch.manual_seed(0)
    verdict = mc.batch_independence(om.BatchMeanMLP(6, 3), x)
    assert verdict.ok is False
    assert [0, 1] in verdict.pairs and "0<-1" in verdict.message
    assert verdict.other_inputs_reached == 16 * 15  # every pair mixes
    matrix = np.array(verdict.matrix)
    assert matrix.shape == (16, 16) and matrix.max() == pytest.approx(1.0)


def test_logits_scaled_50_times_at_init_go_red_far_above_ln_c():
    x, y = tensors(*om.blobs())
    torch.manual_seed(0)
    verdict = mc.loss_at_init(om.LogitsTimes50(6, 3), x, y, "cross_entropy")
    assert verdict.ok is False and "far above" in verdict.message
    assert verdict.uninformed == pytest.approx(math.log(3)) and verdict.measured > 1.1 * math.log(3)


def test_an_unused_layer_goes_red_naming_its_parameters():
    x, y = tensors(*om.blobs())
    torch.manual_seed(0)
    verdict = mc.gradients(om.UnusedLayer(6, 3), x[:64], y[:64], "cross_entropy")
    assert verdict.ok is False
    assert verdict.without == ["extra.weight", "extra.bias"]
    assert "extra.weight" in verdict.message and "extra.bias" in verdict.message
    assert verdict.checked == 8


def test_a_frozen_parameter_is_not_asked_for_a_gradient():
    x, y = tensors(*om.blobs())

    def frozen():
        model = om.UnusedLayer(6, 3)
        model.extra.requires_grad_(False)
        return model

    assert mc.gradients(frozen(), x[:64], y[:64], "cross_entropy").ok is True


def test_a_model_that_ignores_its_input_does_no_better_than_its_zero_input_twin():
    x, y = tensors(*om.blobs())
    verdict = mc.input_independent(lambda: om.IgnoresInput(6, 3), x, y, "cross_entropy", steps=100)
    assert verdict.ok is False and "does not use its input" in verdict.message
    assert verdict.real_val_loss == pytest.approx(verdict.twin_val_loss, rel=1e-6)


def test_a_model_that_cannot_fit_8_points_goes_red_saying_how_far_it_got():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    order = np.argsort(x.mean(axis=1))
    y = np.zeros(8, dtype=np.int64)
    y[order[1::2]] = 1  # labels alternate along the one number the model sees: no single cut separates them
    xt, yt = tensors(x, y)
    verdict = mc.overfit_one_batch(lambda: om.CannotFit(6, 2), xt, yt, "cross_entropy", steps=300)
    assert verdict.ok is False and verdict.steps == 300
    assert verdict.final_loss > verdict.threshold == pytest.approx(0.05)
    assert f"to {verdict.final_loss:.3g} in 300 steps" in verdict.message and "went from" in verdict.message
    assert verdict.curve[0][0] == 1 and verdict.curve[1][0] == 10
    # the same points, a model with the capacity: green
    assert mc.overfit_one_batch(lambda: om.make_mlp(6, 2), xt, yt, "cross_entropy", steps=300).ok is True


def test_a_transformer_without_its_causal_mask_leaks_the_future():
    x, _ = tensors(*om.next_token_text())
    torch.manual_seed(0)
    verdict = mc.causality(om.TinyTransformer(causal=False), x)
    assert verdict.ok is False and verdict.first_leak == [0, 1]
    assert "output at position 0 depends on input at position 1 > 0" in verdict.message
    torch.manual_seed(0)
    verdict = mc.causality(om.TinyTransformer(causal=True), x)
    assert verdict.ok is True and verdict.first_leak is None
    matrix = np.array(verdict.matrix)
    assert matrix.shape == (12, 12) and (np.triu(matrix, 1) == 0).all() and (np.diag(matrix) > 0).all()


def test_nan_in_the_batch_goes_red_just_before_the_net():
    x, y = om.blobs()
    x[3, 2] = np.nan
    x[5, 0] = np.inf
    xt, yt = tensors(x, y)
    verdict, artifact = mc.batch_seen(om.make_mlp(6, 3), xt[:64], yt[:64])
    assert verdict.ok is False and verdict.nan == 2 and "2 NaN/inf" in verdict.message
    assert artifact is None and verdict.shape == [64, 6] and verdict.dtype == "float32"
    assert len(verdict.channels) == 6 and verdict.min == pytest.approx(float(np.nanmin(x[:64][np.isfinite(x[:64])])))


# -- correct models stay green ---------------------------------------------------------------------------------
def test_a_correct_mlp_on_messy_data_is_green_with_exact_init_well_advice():
    x, y = messy_classes()
    found, artifacts = mc.run_all(lambda: om.make_mlp(6, 3), x, y, budget=SMALL)
    assert set(found) == {"loss_at_init", "gradients", "batch_independence", "overfit_one_batch",
                          "input_independent", "lr_range", "just_before_the_net"}  # no causality unless causal
    red = {name: v.message for name, v in found.items() if v.ok is False}
    assert not red
    assert found["lr_range"].ok is None and found["overfit_one_batch"].n_distinct == 8
    init = found["loss_at_init"]
    assert init.advice.startswith("init well: set the last layer's bias to [")
    assert init.bias == pytest.approx(om.log_prior(y, 3))
    assert artifacts == {}
    # the advised bias with a zero last-layer weight starts at the prior's entropy, to 1e-4
    torch.manual_seed(0)
    model = om.make_mlp(6, 3)
    with torch.no_grad():
        model[-1].weight.zero_()
        model[-1].bias.copy_(torch.tensor(init.bias))
    xt, yt = tensors(x, y)
    prior = np.bincount(y) / len(y)
    with torch.no_grad():
        start = float(F.cross_entropy(model(xt), yt))
    assert start == pytest.approx(-(prior * np.log(prior)).sum(), abs=1e-4)
    assert init.expected == pytest.approx(-(prior * np.log(prior)).sum(), abs=1e-9)


def test_balanced_classes_get_no_init_advice():
    x, y = om.blobs(weights=[0.34, 0.33, 0.33])
    xt, yt = tensors(x, y)
    torch.manual_seed(0)
    verdict = mc.loss_at_init(om.make_mlp(6, 3), xt, yt, "cross_entropy")
    assert verdict.ok is True and verdict.advice == "" and verdict.bias is None


def test_batch_norm_mixes_in_train_mode_only_and_is_explained_not_red():
    x, _ = tensors(*om.blobs())
    torch.manual_seed(0)
    verdict = mc.batch_independence(om.BatchNormMLP(6, 3), x)
    assert verdict.ok is True and verdict.batch_norm == ["net.1"]
    assert "BatchNorm" in verdict.message and "by design" in verdict.message and verdict.pairs


def test_batch_norm_does_not_hide_another_mixing_layer():
    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.mixed = nn.BatchNorm1d(6), om.BatchMeanMLP(6, 3)

        def forward(self, x):
            return self.mixed(self.norm(x))

    x, _ = tensors(*om.blobs())
    verdict = mc.batch_independence(Both(), x)
    assert verdict.ok is False and "even in eval mode" in verdict.message


def test_dropout_does_not_mix_the_batch():
    x, _ = tensors(*om.blobs())
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    assert mc.batch_independence(model, x).ok is True


def test_a_correct_causal_transformer_is_green():
    x, y = om.next_token_text(n=48)
    budget = mc.Budget(overfit_steps=300, twin_steps=60, lr_steps=30, rows=48)
    found, _ = mc.run_all(lambda: om.TinyTransformer(causal=True), x, y, causal=True, budget=budget)
    assert "causality" in found
    red = {name: v.message for name, v in found.items() if v.ok is False}
    assert not red
    assert found["loss_at_init"].uninformed == pytest.approx(math.log(16))
    assert found["batch_independence"].ok is True  # through the token embedding's output


def test_a_cnn_on_images_stores_the_batch_as_images():
    rng = np.random.default_rng(0)
    x = rng.random(size=(40, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    torch.manual_seed(0)
    verdict, artifact = mc.batch_seen(om.SmallCNN(), *tensors(x, y))
    assert verdict.ok is True and verdict.images == 16 and verdict.shape == [40, 1, 8, 8]
    assert [c["channel"] for c in verdict.channels] == [0]
    assert artifact["shape"] == [40, 1, 8, 8] and len(artifact["images"]) == 16
    pixels = np.array(artifact["images"])
    assert pixels.shape == (16, 1, 8, 8) and pixels.min() == 0 and pixels.max() == 255
    assert artifact["labels"] == [str(v) for v in y[:16]]
    big = torch.zeros(2, 3, 200, 130)
    assert np.array(probes.images_of(big, None)["images"]).shape == (2, 3, 50, 33)


# -- the exact matrix against the per-example loop -------------------------------------------------------------------
def test_the_exact_matrix_equals_a_per_example_gradient_loop():
    torch.manual_seed(3)
    model = om.BatchMeanMLP(5, 4)  # every entry non-zero, of varied sizes
    x = torch.randn(10, 5)
    matrix, batched = probes.batch_matrix(model, x)
    assert batched is True
    out = model(x)
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(probes.RANDOM_SEED))
    oracle = np.zeros((10, 10))
    for i in range(10):
        xi = x.clone().requires_grad_(True)
        (model(xi)[i] * r[i]).sum().backward()
        oracle[i] = xi.grad.abs().sum(dim=1).numpy()
    np.testing.assert_allclose(matrix, oracle / oracle.max(), rtol=1e-5, atol=1e-7)
    assert matrix.diagonal().min() > 0 and (matrix > 0).all()


def test_the_loop_fallback_gives_the_same_matrix(monkeypatch):
    torch.manual_seed(3)
    model, x = om.BatchMeanMLP(5, 4), torch.randn(6, 5)
    batched_matrix, _ = probes.batch_matrix(model, x)
    real = torch.autograd.grad

    def no_vmap(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("no batching rule")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    looped, batched = probes.batch_matrix(model, x)
    assert batched is False
    np.testing.assert_allclose(looped, batched_matrix, rtol=1e-6)


def test_token_inputs_without_an_embedding_are_not_judged():
    class Counts(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x.float())

    verdict = mc.batch_independence(Counts(), torch.randint(0, 5, (8, 4)))
    assert verdict.ok is None and "nn.Embedding" in verdict.message


# -- the formulas against brute force ---------------------------------------------------------------------------------
def brute_constant(loss, y, width):
    """The lowest loss over a grid of constants (one output column)."""
    grid = torch.linspace(float(y.min()) - 1, float(y.max()) + 1, 20001)
    values = [float(ml.loss_value(loss, torch.full((len(y), width), float(c)), y)) for c in grid[::10]]
    return min(values)


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_regression_formulas_match_brute_force(loss):
    rng = np.random.default_rng(1)
    y = (3 + 2 * rng.standard_t(3, size=301)).astype(np.float32)
    yt = torch.from_numpy(y)
    zero = float(ml.loss_value(loss, torch.zeros(301, 1), yt))
    assert ml.uninformed(loss, y) == pytest.approx(zero, rel=1e-5)
    best, bias = ml.best_constant(loss, y)
    at_bias = float(ml.loss_value(loss, torch.full((301, 1), bias[0]), yt))
    assert at_bias == pytest.approx(best, rel=1e-5)
    assert best <= brute_constant(loss, yt, 1) + 1e-6  # nothing on the grid does better
    assert best == pytest.approx(brute_constant(loss, yt, 1), rel=1e-3)
    assert ml.imbalanced(loss, y)  # mean 3 with a spread of about 2: advise the bias


def test_cross_entropy_formula_matches_brute_force_for_classes_and_sequences():
    rng = np.random.default_rng(2)
    y = rng.choice(4, size=(50, 7), p=[0.5, 0.3, 0.15, 0.05])
    yt = torch.from_numpy(y)
    best, bias = ml.best_constant("cross_entropy", y, 4)
    logits = torch.tensor(bias).expand(50, 7, 4)
    assert float(ml.loss_value("cross_entropy", logits, yt)) == pytest.approx(best, abs=1e-6)
    assert ml.uninformed("cross_entropy", y, 4) == pytest.approx(
        float(ml.loss_value("cross_entropy", torch.zeros(50, 7, 4), yt)))
    for _ in range(200):  # no other constant logits do better
        other = torch.tensor(bias) + 0.3 * torch.randn(4)
        assert float(ml.loss_value("cross_entropy", other.expand(50, 7, 4), yt)) >= best - 1e-6


def test_bce_formula_matches_brute_force_for_multi_label():
    rng = np.random.default_rng(3)
    y = (rng.random((80, 3)) < [0.1, 0.5, 0.8]).astype(np.float32)
    yt = torch.from_numpy(y)
    best, bias = ml.best_constant("bce", y)
    assert float(ml.loss_value("bce", torch.tensor(bias).expand(80, 3), yt)) == pytest.approx(best, abs=1e-6)
    assert ml.uninformed("bce", y) == pytest.approx(float(ml.loss_value("bce", torch.zeros(80, 3), yt)))
    for _ in range(200):
        other = torch.tensor(bias) + 0.3 * torch.randn(3)
        assert float(ml.loss_value("bce", other.expand(80, 3), yt)) >= best - 1e-6
    assert ml.imbalanced("bce", y)
    assert not ml.imbalanced("bce", np.array([0, 1] * 20, dtype=np.float32))


@pytest.mark.parametrize("loss", ml.LOSSES)
def test_loss_at_init_advice_bias_gives_the_best_constant(loss):
    """Set the advised bias on a zero-weight last layer: the step-0 loss is the formula's best constant."""
    if loss in ("cross_entropy",):
        x, y = om.blobs(weights=[0.7, 0.2, 0.1])
        width = 3
    elif loss == "bce":
        x, labels = om.blobs(weights=[0.8, 0.2], c=2)
        y, width = labels.astype(np.float32), 1
    else:
        x, y = om.regression(offset=5.0)
        width = 1
    xt, yt = mc.as_tensors(x, y)
    torch.manual_seed(0)
    verdict = mc.loss_at_init(om.make_mlp(6, width), xt, yt, loss)
    assert verdict.ok is True and verdict.bias is not None and "init well" in verdict.advice
    model = om.make_mlp(6, width)
    with torch.no_grad():
        model[-1].weight.zero_()
        model[-1].bias.copy_(torch.tensor(verdict.bias))
    with torch.no_grad():
        start = float(ml.loss_value(loss, model(xt), yt))
    assert start == pytest.approx(verdict.expected, abs=1e-4)


def test_a_regression_model_whose_output_is_far_too_large_goes_red():
    x, y = mc.as_tensors(*om.regression())
    verdict = mc.loss_at_init(om.LogitsTimes50(6, 1), x, y, "mse")
    assert verdict.ok is False and "far above" in verdict.message


def test_overfit_reports_the_floor_of_identical_inputs_with_different_labels():
    x = np.repeat(np.eye(4, 6, dtype=np.float32), 2, axis=0)  # 4 distinct inputs, each twice
    y = np.array([0, 1, 0, 0, 1, 1, 2, 2])  # the first input carries two labels
    xt, yt = tensors(x, y)
    verdict = mc.overfit_one_batch(lambda: om.make_mlp(6, 3), xt, yt, "cross_entropy", steps=500)
    assert verdict.n_distinct == 4 and verdict.n_ambiguous == 2
    assert verdict.floor == pytest.approx(2 * math.log(2) / 8)
    assert verdict.ok is True and "identical inputs with different targets" in verdict.message


def test_overfit_picks_distinct_inputs_when_the_data_repeats():
    x, y = messy_classes()
    xt, yt = tensors(np.concatenate([x[:3]] * 20 + [x]), np.concatenate([y[:3]] * 20 + [y]))
    verdict = mc.overfit_one_batch(lambda: om.make_mlp(6, 3), xt, yt, "cross_entropy", steps=300)
    assert verdict.n == 8 and verdict.n_distinct == 8 and verdict.floor == 0


def test_lr_range_suggests_a_learning_rate_on_the_range_and_stays_informational():
    xt, yt = tensors(*om.blobs())
    verdict = mc.lr_range(lambda: om.make_mlp(6, 3), xt, yt, "cross_entropy", steps=80)
    assert verdict.ok is None and verdict.suggested in verdict.lrs
    assert 1e-5 < verdict.suggested < 1.0
    assert verdict.message == f"suggested learning rate {verdict.suggested:.1g} (steepest fall of the loss)"
    assert verdict.lrs[0] == pytest.approx(1e-7) and np.all(np.diff(verdict.lrs) > 0)
    assert len(verdict.losses) == len(verdict.lrs) == verdict.steps
    assert verdict.steps < 80 or verdict.lrs[-1] == pytest.approx(10.0)  # stopped early once it diverged


# -- run_all: inputs, errors, artifacts ---------------------------------------------------------------------------
def test_a_model_that_raises_is_one_line_naming_the_check():
    class Broken(nn.Module):
        def forward(self, x):
            raise TypeError("forward() got an unexpected argument\nmore lines")

    x, y = om.blobs(n=30)
    with pytest.raises(BadInput, match=r"^the model raised TypeError: forward\(\) got an unexpected argument "
                                       r"\(during a first forward\)$"):
        mc.run_all(Broken, x, y, budget=SMALL)
    with pytest.raises(BadInput, match="not a torch.nn.Module"):
        mc.run_all(lambda: "model", x, y, budget=SMALL)
    with pytest.raises(BadInput, match=r"^pass a factory that builds a fresh model .*lambda: Sequential"):
        mc.run_all(om.make_mlp(6, 3), x, y, budget=SMALL)  # the model itself, not what builds it
    with pytest.raises(BadInput, match=r"the loss defaulted to mse because y is float; .*--loss cross_entropy"):
        mc.run_all(lambda: om.make_mlp(6, 3), x, y.astype(np.float32), budget=SMALL)  # class labels saved as floats
    with pytest.raises(BadInput, match=r"y holds class 2, but the model returns logits for 2 classes \(0 to 1\)"):
        mc.run_all(lambda: om.make_mlp(6, 2), x, y, budget=SMALL)
    with pytest.raises(BadInput, match="30 examples and y has 29"):
        mc.run_all(lambda: om.make_mlp(6, 3), x, y[:29], budget=SMALL)
    with pytest.raises(BadInput, match="unknown loss"):
        mc.run_all(lambda: om.make_mlp(6, 3), x, y, loss="hinge", budget=SMALL)


def test_run_all_stores_strict_json_even_when_the_data_holds_nan():
    x, y = om.blobs(n=60)
    x[:, 0] = np.nan
    found, _ = mc.run_all(lambda: om.make_mlp(6, 3), x, y, budget=mc.Budget(overfit_steps=20, twin_steps=20,
                                                                               lr_steps=20, rows=60))
    assert found["just_before_the_net"].ok is False and found["loss_at_init"].ok is False
    json.dumps({name: v.to_json() for name, v in found.items()}, allow_nan=False)  # raises on NaN or inf
    assert found["loss_at_init"].measured is None


def test_run_all_restores_the_thread_count_a_factory_changes():
    before = torch.get_num_threads()

    def greedy():
        torch.set_num_threads(before + 1)
        return om.make_mlp(6, 3)

    x, y = om.blobs(n=40)
    mc.run_all(greedy, x, y, budget=mc.Budget(overfit_steps=5, twin_steps=5, lr_steps=5))
    assert torch.get_num_threads() == before


def test_inputs_and_targets_are_converted_and_the_loss_inferred():
    x, y = mc.as_tensors(np.zeros((3, 2), dtype=np.float64), np.array([True, False, True]))
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert mc.as_tensors(np.zeros((3, 2), dtype=np.int32), [0, 1, 2])[0].dtype == torch.int64
    assert mc.infer_loss(np.array([0, 1, 2])) == "cross_entropy" and mc.infer_loss(np.array([0.5])) == "mse"


def test_too_few_rows_for_the_twins_is_not_judged():
    xt, yt = tensors(*om.blobs(n=12))
    verdict = mc.input_independent(lambda: om.make_mlp(6, 3), xt, yt, "cross_entropy")
    assert verdict.ok is None and "too few" in verdict.message


def test_a_factory_that_raises_or_a_model_without_trainable_parameters_is_one_line():
    def failing():
        raise ValueError("no such checkpoint")

    x, y = om.blobs(n=30)
    with pytest.raises(BadInput, match="^the factory raised ValueError: no such checkpoint$"):
        mc.run_all(failing, x, y, budget=SMALL)

    def frozen():
        return om.make_mlp(6, 3).requires_grad_(False)

    with pytest.raises(BadInput, match="no parameter that requires grad"):
        mc.run_all(frozen, x, y, budget=SMALL)


def test_run_all_is_reproducible_with_the_same_seed():
    x, y = om.blobs(n=80)
    budget = mc.Budget(overfit_steps=30, twin_steps=30, lr_steps=30)
    first = mc.run_all(lambda: om.make_mlp(6, 3), x, y, budget=budget, seed=5)[0]
    again = mc.run_all(lambda: om.make_mlp(6, 3), x, y, budget=budget, seed=5)[0]
    assert {k: v.to_json() for k, v in first.items()} == {k: v.to_json() for k, v in again.items()}


def test_softmax_outputs_do_not_hide_the_mixing():
    """Probabilities sum to 1: backpropagating a plain sum would give zero; the random weighting does not."""
    x, _ = tensors(*om.blobs())
    mixed = nn.Sequential(om.BatchMeanMLP(6, 3), nn.Softmax(dim=1))
    assert mc.batch_independence(mixed, x).ok is False
    sound = mc.batch_independence(nn.Sequential(om.make_mlp(6, 3), nn.Softmax(dim=1)), x)
    assert sound.ok is True and sound.own_gradient > 0


def test_overfit_on_sequences_shows_predictions_in_the_labels_shape():
    x, y = tensors(*om.next_token_text(n=16))
    verdict = mc.overfit_one_batch(lambda: om.TinyTransformer(), x, y, "cross_entropy", steps=300)
    assert verdict.ok is True and np.array(verdict.predictions).shape == (8, 12) == np.array(verdict.labels).shape


def test_a_label_beyond_the_models_classes_anywhere_in_the_rows_is_one_line():
    x, y = om.blobs(n=400, c=3)  # all rows used (budget 512), the bad label the last of them
    y[-1] = 7
    with pytest.raises(BadInput, match=r"^y holds class 7, but the model returns logits for 3 classes \(0 to 2\)$"):
        mc.run_all(lambda: om.make_mlp(6, 3), x, y, budget=SMALL)


def test_a_long_advised_bias_is_shortened_in_the_message_and_whole_in_the_field():
    rng = np.random.default_rng(0)
    y = rng.choice(30, size=300, p=np.arange(1, 31) / np.arange(1, 31).sum())
    x = rng.normal(size=(300, 6)).astype(np.float32)
    torch.manual_seed(0)
    verdict = mc.loss_at_init(om.make_mlp(6, 30), *tensors(x, y), "cross_entropy")
    assert len(verdict.bias) == 30 and "... 30 values]" in verdict.advice
    assert verdict.bias[0] == pytest.approx(math.log(ml.ABSENT_CLASS_PROB)) or verdict.bias[0] == pytest.approx(
        math.log(np.mean(y == 0)))


def test_an_op_that_cannot_be_vectorized_falls_back_to_a_loop_and_says_so():
    class Square(torch.autograd.Function):  # a backward through numpy: no vmap rule
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return torch.from_numpy(2 * x.numpy() * g.numpy())

    class Model(nn.Module):
        def __init__(self, mix):
            super().__init__()
            self.lin, self.mix = nn.Linear(6, 3), mix

        def forward(self, x):
            h = Square.apply(self.lin(x))
            return h - h.mean(dim=0) if self.mix else h

    x, _ = tensors(*om.blobs())
    sound = mc.batch_independence(Model(False), x)
    assert sound.ok is True and "one backward per example" in sound.message
    assert mc.batch_independence(Model(True), x).ok is False


def test_a_float64_model_gets_float64_inputs():
    x, y = om.regression(n=80)
    found, _ = mc.run_all(lambda: om.make_mlp(6, 1).double(), x, y, budget=mc.Budget(overfit_steps=300,
                                                                                     twin_steps=20, lr_steps=20))
    assert not [name for name, v in found.items() if v.ok is False]
    assert found["just_before_the_net"].dtype == "float64"


def test_a_batch_norm_model_overfits_one_batch_judged_in_eval_mode():
    xt, yt = tensors(*om.blobs())
    verdict = mc.overfit_one_batch(lambda: om.BatchNormMLP(6, 3), xt, yt, "cross_entropy")
    assert verdict.ok is True and verdict.final_loss <= verdict.threshold
    assert verdict.curve[-1] == [verdict.steps, verdict.final_loss]


def test_dropout_is_off_while_overfitting_one_batch_and_the_message_says_so():
    x, y = om.blobs(n=60)
    torch.manual_seed(0)

    def with_dropout():
        return nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 3))

    xt, yt = mc.as_tensors(x, y)
    verdict = mc.overfit_one_batch(with_dropout, xt, yt, "cross_entropy", steps=1000)
    assert verdict.ok is True and "dropout off for this check: 1 layer" in verdict.message


def test_a_flat_lr_range_suggests_nothing():
    x, y = om.blobs(n=120)
    xt, yt = mc.as_tensors(x, y)
    verdict = mc.lr_range(lambda: om.IgnoresInput(6, 3), xt, yt, "cross_entropy", steps=60)  # it learns no input
    assert verdict.suggested is None and "never fell 10% below its start" in verdict.message
    assert mc.lr_range(lambda: om.make_mlp(6, 3), xt, yt, "cross_entropy", steps=60).suggested is not None


def test_token_sequences_checked_without_causal_get_a_hint_not_a_verdict():
    x, y = om.next_token_text()
    found, _ = mc.run_all(lambda: om.TinyTransformer(causal=False), x, y,
                          budget=mc.Budget(overfit_steps=5, twin_steps=5, lr_steps=12, rows=64))
    assert found["causality"].ok is None and "pass causal=True (--causal)" in found["causality"].message
