"""check_model, attach and assert_recipe on a user's own model: red on a broken one, green on a correct one, the run
in the store honest about how it ended; load_factory and load_arrays as the CLI uses them."""
import numpy as np
import pytest
from own_models import LogitsTimes50, UnusedLayer, blobs, make_mlp
from torch import nn

from recipe_core import errors
from recipe_core.testing import assert_recipe
from recipe_core.tracking import api
from recipe_core.training import own_model, verdicts
from recipe_core.training.own_model import CheckReport, attach, check_model, load_arrays, load_factory

X, Y = blobs(n=120)


def test_a_correct_model_is_green_and_recorded(store):
    report = check_model(lambda: make_mlp(6, 3), X, Y, name="mlp", tags=("ci",))
    assert report.ok and report.red == [], str(report)
    assert str(report).splitlines()[0].startswith("PASS loss_at_init: ")
    r = store.get_run(report.run_id)
    assert (r.status, r.source, r.model, r.tags) == ("finished", "check", "Sequential", ("ci",))
    assert verdicts.read(r.checks).keys() == report.checks.keys()
    assert r.metrics["loss_at_init"] == pytest.approx(report.checks["loss_at_init"].measured)
    assert report.to_json()["run_id"] == r.id and report.to_json()["checks"]["gradients"]["ok"] is True


def test_a_broken_model_is_red_by_name(store):
    report = check_model(lambda: LogitsTimes50(6, 3), X, Y)
    assert "loss_at_init" in report.red and not report.ok
    assert "FAIL loss_at_init: " in str(report)
    assert store.get_run(report.run_id).checks["loss_at_init"]["ok"] is False


def test_not_recorded_leaves_the_store_alone(store):
    report = check_model(lambda: UnusedLayer(6, 3), X, Y, record=False)
    assert report.run_id is None and report.red == ["gradients"]
    assert "extra.weight" in report.checks["gradients"].message
    assert store.list_runs() == []


def test_what_fails_before_any_check_is_refused_before_its_run_exists(store):
    def factory():
        raise RuntimeError("weights file missing\nat line 2")

    with pytest.raises(errors.BadInput, match="^the factory raised RuntimeError: weights file missing$"):
        check_model(factory, X, Y)
    with pytest.raises(errors.BadInput, match="bce needs targets between 0 and 1"):
        check_model(lambda: make_mlp(6, 1), X, Y, loss="bce")
    assert store.list_runs() == []  # nothing half-registered


class FailsWhenTraining(nn.Module):
    """Fine on the first forward (eval mode), then raises in the first check, which runs in train mode."""

    def __init__(self, error: BaseException):
        super().__init__()
        self.net, self.error = make_mlp(6, 3), error

    def forward(self, x):
        if self.training:
            raise self.error
        return self.net(x)


def test_a_model_that_raises_during_the_checks_ends_its_run_failed_in_one_line(store):
    with pytest.raises(errors.BadInput, match=r"^the model raised RuntimeError: shapes differ \(during loss_at_init"):
        check_model(lambda: FailsWhenTraining(RuntimeError("shapes differ\nline 2")), X, Y)
    (r,) = store.list_runs()
    assert r.status == "failed" and r.reason.startswith("the model raised RuntimeError: shapes differ")


def test_ctrl_c_in_the_model_ends_its_run_cancelled(store):
    with pytest.raises(KeyboardInterrupt):
        check_model(lambda: FailsWhenTraining(KeyboardInterrupt()), X, Y)
    (r,) = store.list_runs()
    assert r.status == "cancelled"


def test_attach_merges_the_checks_into_an_existing_run(store):
    run = api.start_run(name="my training", store_url=store.url)
    attach(run, {"gradients": verdicts.Gradients(False, "no gradient: extra.weight", without=["extra.weight"])},
           {"batch_seen": {"shape": [2, 1, 2, 2]}})
    attach(run, {"loss_at_init": verdicts.LossAtInit(True, "fine", measured=1.1)})
    run.finish()
    r = store.get_run(run.run_id)
    assert set(r.checks) == {"gradients", "loss_at_init"} and r.status == "finished"
    assert verdicts.read(r.checks)["gradients"].without == ["extra.weight"]
    assert store.get_json(r.id, "batch_seen") == {"shape": [2, 1, 2, 2]}


def test_assert_recipe_names_each_red_check(store):
    with pytest.raises(AssertionError) as raised:
        assert_recipe(lambda: LogitsTimes50(6, 3), X, Y)
    text = str(raised.value)
    message = store.list_runs()[0].checks["loss_at_init"]["message"]
    assert "loss_at_init: " + message in text and "gradients" not in text
    report = assert_recipe(lambda: LogitsTimes50(6, 3), X, Y, skip=("loss_at_init",))  # still run, recorded
    assert report.red == ["loss_at_init"] and report.run_id


def test_assert_recipe_is_green_on_a_correct_model_and_records_where_a_store_is_named(store, monkeypatch):
    report = assert_recipe(lambda: make_mlp(6, 3), X, Y)  # RECIPE_HOME is set (the settings fixture): recorded
    assert isinstance(report, CheckReport) and report.ok and store.get_run(report.run_id).source == "check"
    monkeypatch.delenv("RECIPE_HOME")
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    assert assert_recipe(lambda: make_mlp(6, 3), X, Y, seed=1).run_id is None  # a plain pytest: nothing written


def test_assert_recipe_refuses_a_skip_that_names_no_check(settings):
    with pytest.raises(errors.BadInput, match="skip names no check of a model: 'loss_at_int'"):
        assert_recipe(lambda: make_mlp(6, 3), X, Y, skip=("loss_at_int",))
    with pytest.raises(errors.BadInput, match="skip names no check of a model: 'capacity'"):  # the app's MLP only
        assert_recipe(lambda: make_mlp(6, 3), X, Y, skip=("capacity",))


def test_load_factory_imports_the_file_with_its_local_imports(tmp_path):
    (tmp_path / "helpers_for_model.py").write_text("WIDTH = 7\n")
    (tmp_path / "model.py").write_text("from helpers_for_model import WIDTH\n\n\ndef make():\n    return WIDTH\n")
    assert load_factory(f"{tmp_path / 'model.py'}:make")() == 7
    assert str(tmp_path) not in __import__("sys").path  # its folder was on sys.path only while importing


def test_load_arrays_reads_without_pickle(tmp_path, settings):
    np.savez(tmp_path / "d.npz", x=X, y=Y, extra=np.arange(3))
    x, y = load_arrays(tmp_path / "d.npz")
    assert np.array_equal(x, X) and np.array_equal(y, Y)
    np.savez(tmp_path / "o.npz", x=X, y=np.array([None] * len(X), dtype=object))
    with pytest.raises(errors.BadInput, match="Python objects"):
        load_arrays(tmp_path / "o.npz")
    np.save(tmp_path / "plain.npy", X)
    with pytest.raises(errors.BadInput, match="not an .npz"):
        load_arrays(tmp_path / "plain.npy")


def test_report_lines_and_json_are_plain():
    report = CheckReport("abc", {"gradients": verdicts.Gradients(True, "all 4 get one"),
                                 "lr_range": verdicts.LrRange(None, "suggested 1e-3", losses=[float("nan")]),
                                 "causality": verdicts.Causality(False, "leaks at 3")})
    assert str(report).splitlines() == ["PASS gradients: all 4 get one", "n/a  lr_range: suggested 1e-3",
                                        "FAIL causality: leaks at 3"]
    assert report.red == ["causality"] and report.to_json()["checks"]["lr_range"]["losses"] == [None]
    assert own_model.CheckReport(None, {}).ok


def test_the_names_skip_takes_are_the_checks_a_model_gets():
    from own_models import TinyTransformer, next_token_text

    from recipe_core.training import model_checks, own_model

    x, y = next_token_text()
    small = model_checks.Budget(overfit_steps=5, twin_steps=5, lr_steps=12, rows=64)
    found, _ = model_checks.run_all(TinyTransformer, x, y, causal=True, budget=small)
    assert set(found) == set(own_model.CHECKS)
