"""Ensembles on real runs: an ensemble of one is its member, averaging never loses to the members' mean log loss
(Jensen), the stored numbers match scikit-learn on the raw file, and every mismatch is refused in one line."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, mean_squared_error

from recipe_core.config import TrainConfig, load_settings
from recipe_core.data import ingest
from recipe_core.errors import BadInput
from recipe_core.search import ensembles
from recipe_core.tracking import api as tracking
from recipe_core.tracking.store import Store
from recipe_core.training import artifacts, runs, splits

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


class Lab:
    """One store with the runs every test averages, trained once for the module (training is the slow part)."""

    def __init__(self, home: Path):
        home.mkdir()
        self.settings = load_settings({"RECIPE_HOME": str(home)})
        self.store = Store(self.settings.store_url)
        self.wine = ingest.ingest_file(self.settings, self.store, SAMPLES / "wine.csv")
        self.diabetes = ingest.ingest_file(self.settings, self.store, SAMPLES / "diabetes.csv")
        self.prior = self.train(self.wine, "cultivar", model="prior")
        self.linear = self.train(self.wine, "cultivar", model="linear")
        self.gbm = self.train(self.wine, "cultivar", model="gbm", gbm_iterations=50)
        self.mlp = self.train(self.wine, "cultivar", model="mlp", epochs=20)
        self.reg_linear = self.train(self.diabetes, "disease_progression", model="linear")
        self.reg_gbm = self.train(self.diabetes, "disease_progression", model="gbm", gbm_iterations=50)

    def train(self, record, target, **config):
        run = runs.create(self.store, record, target, TrainConfig(checks=False, **config), author="tester")
        run = runs.execute(self.settings, self.store, run.id)
        assert run.status == "finished", run.reason
        return run

    def predictions(self, run_id):
        return artifacts.load_predictions(self.store.get_artifact(run_id, "val_predictions"))

    def ensemble(self, *members, **kwargs):
        return ensembles.create(self.settings, self.store, [m if isinstance(m, str) else m.id for m in members],
                                author="tester", **kwargs)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return Lab(tmp_path_factory.mktemp("ensembles") / "recipe_home")


def raw_validation(lab, record, target, filename):
    raw = pd.read_csv(SAMPLES / filename)
    split = splits.load(lab.store.get_split(record.id, target))
    return raw[target].iloc[split.rows("val")].to_numpy(), split.rows("val")


def test_an_ensemble_of_one_run_is_that_run(lab):
    one = lab.ensemble(lab.mlp)
    for key, value in lab.mlp.metrics.items():
        assert one.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    rows, pred = lab.predictions(one.id)
    member_rows, member_pred = lab.predictions(lab.mlp.id)
    assert np.array_equal(rows, member_rows) and np.array_equal(pred, member_pred)
    assert one.metrics["gain_vs_best"] == pytest.approx(0.0, abs=1e-6)
    assert one.metrics["n_members"] == 1 and one.parent_id == lab.mlp.id
    evaluation = lab.store.get_json(one.id, "evaluation")
    assert evaluation["confusion"] == lab.store.get_json(lab.mlp.id, "evaluation")["confusion"]


# stored probabilities are float32: their sums miss 1 by more than float64's tolerance, not by anything that matters
@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
def test_averaging_never_loses_to_the_members_mean_log_loss(lab):
    members = [lab.linear, lab.gbm, lab.mlp]
    ens = lab.ensemble(*members)
    losses = [m.metrics["val_loss"] for m in members]
    assert ens.metrics["val_loss"] <= np.mean(losses) + 1e-6  # Jensen: log loss is convex in the probabilities
    assert ens.metrics["gain_vs_best"] == pytest.approx(min(losses) - ens.metrics["val_loss"], abs=1e-12)
    assert ens.parent_id == members[int(np.argmin(losses))].id
    # the oracle: scikit-learn's log loss of the plain mean of the stored probabilities, on the raw file's labels
    y_val, val_rows = raw_validation(lab, lab.wine, "cultivar", "wine.csv")
    mean = np.mean([lab.predictions(m.id)[1].astype(float) for m in members], axis=0)
    assert ens.metrics["val_loss"] == pytest.approx(log_loss(y_val, mean, labels=sorted(set(y_val))), rel=1e-6)
    assert ens.metrics["val_accuracy"] == pytest.approx((np.array(sorted(set(y_val)))[mean.argmax(1)] == y_val).mean())
    rows, pred = lab.predictions(ens.id)
    assert np.array_equal(rows, val_rows) and np.allclose(pred, mean, atol=1e-6)
    evaluation = lab.store.get_json(ens.id, "evaluation")
    member_evals = [lab.store.get_json(m.id, "evaluation") for m in members]
    assert ens.metrics["n_parameters"] == evaluation["n_parameters"] == sum(e["n_parameters"] for e in member_evals)
    assert ens.metrics["predict_seconds"] >= sum(e["predict_seconds"] for e in member_evals)
    assert evaluation["classes"] == ["class_0", "class_1", "class_2"]
    assert [m["run_id"] for m in evaluation["members"]] == [m.id for m in members]


def test_regression_averages_the_predictions(lab):
    members = [lab.reg_linear, lab.reg_gbm]
    ens = lab.ensemble(*members)
    assert ens.task == "regression" and ens.config["method"] == "mean prediction"
    mean = np.mean([lab.predictions(m.id)[1].astype(float) for m in members], axis=0)
    rows, pred = lab.predictions(ens.id)
    assert pred.shape == mean.shape and np.allclose(pred, mean, rtol=1e-6)
    y_val, val_rows = raw_validation(lab, lab.diabetes, "disease_progression", "diabetes.csv")
    assert np.array_equal(rows, val_rows)
    assert ens.metrics["val_mse"] == ens.metrics["val_loss"] == pytest.approx(mean_squared_error(y_val, mean),
                                                                              rel=1e-6)
    losses = [m.metrics["val_loss"] for m in members]
    assert ens.metrics["val_loss"] <= np.mean(losses) + 1e-6  # squared error is convex too
    assert ens.metrics["gain_vs_best"] == pytest.approx(min(losses) - ens.metrics["val_loss"], abs=1e-9)


def test_the_ensemble_is_a_run_that_can_itself_be_a_member(lab):
    pair = lab.ensemble(lab.linear, lab.gbm, name="  linear+gbm ")
    listed = {r.id: r for r in lab.store.list_runs(lab.wine.id, "cultivar")}
    stored = listed[pair.id]
    assert stored.model == "ensemble" and stored.status == "finished" and stored.source == "app"
    assert stored.name == "linear+gbm" and stored.tags == ("ensemble",) and stored.seed is None
    assert (stored.split_id, stored.task) == (lab.linear.split_id, "classification")
    assert stored.config == {"members": [lab.linear.id, lab.gbm.id], "method": "mean of probabilities"}
    assert stored.hypothesis == "averaging 2 runs beats the best of them"
    assert stored.started_at and stored.finished_at and stored.metrics == pair.metrics

    nested = lab.ensemble(pair, lab.mlp)
    assert nested.name == f"ensemble-of-2-{nested.id[:6]}"
    expected = (lab.predictions(pair.id)[1].astype(float) + lab.predictions(lab.mlp.id)[1]) / 2
    assert np.allclose(lab.predictions(nested.id)[1], expected, atol=1e-6)
    assert nested.metrics["n_parameters"] == pair.metrics["n_parameters"] + \
        lab.store.get_json(lab.mlp.id, "evaluation")["n_parameters"]

    info = ensembles.summary(lab.store, nested)
    assert info["run_id"] == nested.id and info["gain_vs_best"] == nested.metrics["gain_vs_best"]
    assert [(m["run_id"], m["model"]) for m in info["members"]] == [(pair.id, "ensemble"), (lab.mlp.id, "mlp")]
    assert info["members"][1]["val_loss"] == lab.mlp.metrics["val_loss"]
    assert ensembles.summary(lab.store, nested.id) == info
    with pytest.raises(BadInput, match="not an ensemble"):
        ensembles.summary(lab.store, lab.mlp)


def test_a_repeated_id_counts_once(lab):
    ens = lab.ensemble(lab.linear, lab.gbm, lab.linear.id[:8])
    assert ens.config["members"] == [lab.linear.id, lab.gbm.id] and ens.metrics["n_members"] == 2


def test_members_must_share_dataset_target_and_split(lab):
    with pytest.raises(BadInput, match=r"^members must share dataset, target and split: run "):
        lab.ensemble(lab.linear, lab.reg_linear)
    bmi = lab.train(lab.diabetes, "bmi", model="linear")
    with pytest.raises(BadInput, match=r"members must share dataset, target and split: run .*'bmi'"):
        lab.ensemble(lab.reg_linear, bmi)


def test_refuses_unfinished_unknown_and_prediction_less_runs(lab):
    queued = runs.create(lab.store, lab.wine, "cultivar", TrainConfig(model="linear", checks=False))
    with pytest.raises(BadInput, match="is queued: only finished runs"):
        lab.ensemble(lab.linear, queued)
    with tracking.start_run(name="my-script", dataset=lab.wine.id, target="cultivar",
                            store_url=lab.store.url) as logged:
        logged.log(0, val_loss=0.5)
    assert lab.store.get_run(logged.run_id).status == "finished"
    with pytest.raises(BadInput, match="has no stored validation predictions"):
        lab.ensemble(logged.run_id)
    with pytest.raises(BadInput, match="has no stored validation predictions"):
        lab.ensemble(lab.linear, logged.run_id)
    with pytest.raises(BadInput, match="no run with id"):
        lab.ensemble("ffffffffffff")
    with pytest.raises(BadInput, match="at least one run"):
        lab.ensemble()
    with pytest.raises(BadInput) as caught:
        lab.ensemble(lab.linear, queued)
    assert "\n" not in str(caught.value)  # one line, shown as is by the page and the CLI


def test_top_k_picks_the_lowest_val_loss_and_leaves_the_prior_out(lab):
    lab.ensemble(lab.linear, lab.gbm, lab.mlp)  # ensembles are left out too: their members would count twice
    with tracking.start_run(name="too-good", dataset=lab.wine.id, target="cultivar",
                            store_url=lab.store.url) as logged:
        logged.log(0, val_loss=1e-6)  # the best number, but no predictions to average
    candidates = sorted([lab.linear, lab.gbm, lab.mlp], key=lambda r: r.metrics["val_loss"])
    assert ensembles.top_k(lab.store, lab.wine.id, "cultivar", 2) == [r.id for r in candidates[:2]]
    everything = ensembles.top_k(lab.store, lab.wine.id, "cultivar", 50)
    assert everything == [r.id for r in candidates] and lab.prior.id not in everything
    # higher is better, so best first; ties go to the lower val_loss
    by_accuracy = sorted(candidates, key=lambda r: (-r.metrics["val_accuracy"], r.metrics["val_loss"]))
    assert ensembles.top_k(lab.store, lab.wine.id, "cultivar", 1, metric="val_accuracy") == [by_accuracy[0].id]
    best = lab.ensemble(*ensembles.top_k(lab.store, lab.wine.id, "cultivar", 3))
    assert best.metrics["n_members"] == 3
    for k in (0, -1, True, 1.5):
        with pytest.raises(BadInput, match="k must be a whole number"):
            ensembles.top_k(lab.store, lab.wine.id, "cultivar", k)
    with pytest.raises(BadInput, match="no finished run"):
        ensembles.top_k(lab.store, lab.wine.id, "alcohol", 3)
