"""run.watch: gradient, weight and activation histograms per layer over steps, bounded, written at finish; and
rc.start_run stays free of torch until watch or check is called."""
import subprocess
import sys

import pytest
import torch

import recipe_core as rc
from recipe_core.errors import BadInput
from recipe_core.training import watch as watching
from recipe_core.training.script_run import ScriptRun

pytestmark = pytest.mark.usefixtures("settings")


def mlp(dead: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    if dead:  # every ReLU unit off: nothing reaches the first layer's weights
        with torch.no_grad():
            net[0].bias.fill_(-1e3)
    return net


def train(run, net, steps: int, lr: float = 0.5):
    x, y = torch.randn(32, 6, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for step in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        run.log(step, train_loss=loss.item())


def stored_watch(store, run):
    return store.get_json(run.run_id, "watch")


def test_histograms_reflect_the_weights_and_gradients_over_steps(store):
    net = mlp()
    with rc.start_run(name="watched") as run:
        assert isinstance(run, ScriptRun)
        run.watch(net, every=5, log="all")
        first_weight = net[0].weight.detach().clone()
        train(run, net, 30)
        assert stored_watch(store, run) is None  # written at finish, not on every step
    got = stored_watch(store, run)
    assert got["every"] == 5 and got["bins"] == watching.BINS
    assert set(got["series"]) == {"gradients/0.weight", "gradients/0.bias", "gradients/2.weight", "gradients/2.bias",
                                  "parameters/0.weight", "parameters/0.bias", "parameters/2.weight",
                                  "parameters/2.bias", "activations/0", "activations/1", "activations/2"}
    weights = got["series"]["parameters/0.weight"]
    assert [s[0] for s in weights] == [0, 5, 10, 15, 20, 25]
    step, lo, hi, counts = weights[0]
    # the step-0 snapshot is the init weights exactly: their min, max and every value counted once
    assert (lo, hi) == pytest.approx((float(first_weight.min()), float(first_weight.max())))
    assert sum(counts) == net[0].weight.numel() == 96 and len(counts) == watching.BINS
    assert counts == torch.histc(first_weight, bins=32, min=lo, max=hi).int().tolist()
    activations = got["series"]["activations/1"]  # the ReLU's output: non-negative, one count per value
    assert activations[0][1] == 0.0 and sum(activations[0][3]) == 32 * 16
    grads = got["series"]["gradients/2.weight"]
    assert len(grads) == 6 and all(sum(s[3]) == 48 for s in grads)
    assert len({(s[1], s[2]) for s in grads}) == 6, "the gradients change over steps"
    assert stored_watch(store, run)["series"]["parameters/2.weight"][-1][1:3] != weights[0][1:3]


def test_a_dead_layer_has_all_its_gradients_in_one_zero_bin(store):
    net = mlp(dead=True)
    with rc.start_run(name="dead") as run:
        run.watch(net, every=1, log="gradients")
        train(run, net, 3)
    series = stored_watch(store, run)["series"]
    for step, lo, hi, counts in series["gradients/0.weight"]:
        assert lo == hi == 0.0 and max(counts) == sum(counts) == 96
    live = series["gradients/2.bias"]
    assert all(lo < hi for _, lo, hi, _ in live), "the last layer still learns its bias"
    assert not any(name.startswith("parameters/") for name in series)


def test_many_steps_stay_bounded_and_evenly_thinned(store):
    net = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with rc.start_run(name="long") as run:
        run.watch(net, every=1, log="parameters")
        for _ in range(1000):
            net(x)
    series = stored_watch(store, run)["series"]["parameters/weight"]
    steps = [s[0] for s in series]
    assert 100 <= len(series) <= watching.MAX_SNAPSHOTS
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    assert steps[0] == 0 and len(gaps) == 1 and steps[-1] + gaps.pop() > 900, "even, from the first step to the last"


def test_a_wide_model_keeps_at_most_64_series_spread_over_its_layers(store):
    net = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(80)])
    with rc.start_run(name="wide") as run:
        run.watch(net, every=1, log="all")
        net(torch.randn(2, 2)).sum().backward()
    got = stored_watch(store, run)
    assert len(got["series"]) <= watching.MAX_SERIES and got["skipped"] > 0
    grads = [name for name in got["series"] if name.startswith("gradients/")]
    assert "gradients/0.weight" in grads and "gradients/79.bias" in grads


def test_eval_forwards_are_not_counted_and_nan_is_counted_apart(store):
    net = torch.nn.Linear(3, 2)
    with rc.start_run(name="nan") as run:
        run.watch(net, every=1, log="activations")
        net.eval()
        net(torch.randn(5, 3))
        net.train()
        net(torch.tensor([[float("nan"), 1.0, 2.0], [0.0, 1.0, 2.0]]))
    got = stored_watch(store, run)
    (step, lo, hi, counts), = got["series"]["activations/Linear"]
    assert step == 0 and sum(counts) == 2 and got["nonfinite"]["activations/Linear"] == [[0, 2]]


def test_hooks_come_off_at_finish_and_bad_arguments_are_one_line(store):
    net = torch.nn.Linear(3, 2)
    with rc.start_run(name="off") as run:
        run.watch(net, every=1)
    assert not net._forward_pre_hooks and not net._forward_hooks
    with rc.start_run(name="bad") as run:
        for bad, match in [({"every": 0}, "every"), ({"log": "weights"}, "log must be"), ({"every": 1.5}, "every")]:
            with pytest.raises(BadInput, match=match):
                run.watch(net, **bad)
        with pytest.raises(BadInput, match="torch.nn.Module"):
            run.watch("not a model")


def test_start_run_and_the_wandb_shim_load_no_torch_until_watch():
    code = ("import sys, recipe_core as rc\nfrom recipe_core.compat import wandb\n"
            "run = rc.start_run(name='cheap')\nrun.log(0, loss=1.0)\n"
            "print('torch' in sys.modules)\n"
            "import torch\nrun.watch(torch.nn.Linear(2, 2))\nrun.finish()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_live_run_writes_its_histograms_at_a_flush_now_and_then(store, monkeypatch):
    from recipe_core.training import script_run

    net = torch.nn.Linear(3, 2)
    with rc.start_run(name="live") as run:
        run.watch(net, every=1, log="parameters")
        net(torch.randn(2, 3))
        run.flush()
        assert stored_watch(store, run) is None, "not before WATCH_WRITE_SECONDS"
        monkeypatch.setattr(script_run, "WATCH_WRITE_SECONDS", 0.0)
        run.flush()
        assert len(stored_watch(store, run)["series"]["parameters/weight"]) == 1
        net(torch.randn(2, 3))
    assert len(stored_watch(store, run)["series"]["parameters/weight"]) == 2


def test_check_attaches_the_checks_to_the_run_and_leaves_the_model_as_it_was(store):
    import own_models

    from recipe_core.training.model_checks import Budget

    x, y = own_models.blobs(n=120)
    fast = Budget(overfit_steps=150, twin_steps=80, lr_steps=30)
    with rc.start_run(name="checked") as run:
        good = own_models.make_mlp(6, 3)
        before = [p.detach().clone() for p in good.parameters()]
        state = torch.random.get_rng_state()
        report = run.check(good, batch=(x, y), budget=fast)
        assert torch.equal(state, torch.random.get_rng_state())
        assert all(torch.equal(a, b) for a, b in zip(before, good.parameters()))
        broken = run.check(own_models.BatchMeanMLP(6, 3), batch=(x, y), budget=fast)
        run.log(0, loss=1.0)
    assert report.run_id == run.run_id and report.checks["batch_independence"].ok is True
    assert "batch_independence" in broken.red
    got = store.get_run(run.run_id)
    assert got.checks["batch_independence"]["ok"] is False and got.status == "finished"  # the later check wins
    with pytest.raises(BadInput, match="pair"):
        with rc.start_run(name="bad batch") as run:
            run.check(good, batch=x)


def test_copies_of_a_watched_model_are_not_counted(store):
    import copy

    net = mlp()
    with rc.start_run(name="copied") as run:
        run.watch(net, every=1, log="all")
        twin = copy.deepcopy(net)  # what check() makes for its twins
        for _ in range(3):
            twin(torch.randn(4, 6)).sum().backward()
        net(torch.randn(4, 6)).sum().backward()
    series = stored_watch(store, run)["series"]
    assert {len(s) for s in series.values()} == {1}, "only the watched model's one forward and backward"


def test_a_watched_model_can_still_be_saved_whole(store, tmp_path):
    net = mlp()
    with rc.start_run(name="saved") as run:
        run.watch(net, every=1, log="all")
        torch.save(net, tmp_path / "net.pt")
        loaded = torch.load(tmp_path / "net.pt", weights_only=False)
        loaded(torch.randn(2, 6)).sum().backward()  # its hooks do nothing
        net(torch.randn(2, 6))
    assert {len(s) for s in stored_watch(store, run)["series"].values()} == {1}
