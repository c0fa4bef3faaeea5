"""A user's model's checks on the pages (AppTest): a check run linked by ?runs= opens to every detail (the
dependency heatmaps, the red pairs, the suggested LR, the batch's images, the watched histograms), the red-check
filter keeps only the runs where that check failed, Train's leaderboard names a run's red checks, and hostile names
and messages are shown literally."""
import json
import time

import numpy as np
import pytest
from app_session import no_errors, open_train, start_app
from trained import SAMPLES

from recipe_core.config import load_settings
from recipe_core.data import ingest
from recipe_core.safetext import markdown_literal
from recipe_core.tracking.records import RunRecord, new_id
from recipe_core.tracking.store import Store
from recipe_core.training import verdicts

HOSTILE_NAME = "cnn ![x](http://127.0.0.1:9/run.png) **bold** <b>html</b>"
HOSTILE_PARAM = "head.[click](http://127.0.0.1:9/p).weight"
HOSTILE_MESSAGE = "1 of 6 parameters get no gradient: head.[click](http://127.0.0.1:9/p).weight :material/home:"
BODIES = ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success")


def mixing(n: int) -> list[list[float]]:
    """A model that subtracts the batch mean: every output depends on every input, its own most."""
    m = np.full((n, n), round(1 / n, 4))
    np.fill_diagonal(m, 1.0)
    return m.tolist()


def red_checks(param: str = "head.unused.weight", message: str = "1 of 6 parameters get no gradient") -> dict:
    """Every kind a `check` run stores, as check_model stores them: red where a broken CNN is red."""
    lrs = np.geomspace(1e-6, 1.0, 60)
    losses = 2.3 - 1.5 / (1 + np.exp(-(np.log10(lrs) + 3) * 3)) + np.where(lrs > 0.1, 20 * lrs, 0)
    causal = np.tril(np.ones((12, 12)))
    causal[0, 1] = 0.4  # position 0 sees position 1
    return verdicts.to_json({
        "loss_at_init": verdicts.LossAtInit(
            True, "loss at init 1.66, the class prior's entropy 1.64 (within 10%)", expected=1.64, measured=1.66,
            tolerance=0.1, loss="cross_entropy", uninformed=2.3026, bias=[1.2528, -0.5390, -0.7137],
            advice="the classes are imbalanced: set the last layer's bias to the log class prior"),
        "gradients": verdicts.Gradients(False, message, checked=6, without=[param, "head.unused.bias"],
                                        norms={"conv.weight": 0.81, "conv.bias": 0.12, param: 0.0}),
        "input_independent": verdicts.InputIndependent(True, "the model beats its zero-input twin",
                                                       real_val_loss=0.41, twin_val_loss=2.29, real_train_loss=0.2,
                                                       twin_train_loss=2.28),
        "overfit_one_batch": verdicts.OverfitOneBatch(
            False, "8 examples: loss 0.52 after 500 steps, above 0.05", n=8, steps=500, final_loss=0.52,
            threshold=0.05, curve=[[s, 2.3 * np.exp(-s / 120) + 0.5] for s in range(0, 501, 25)],
            labels=[0, 1, 2, 3, 4, 5, 6, 7], predictions=[0, 1, 2, 3, 4, 5, 6, 0]),  # as model_checks stores it
        "batch_independence": verdicts.BatchIndependence(
            False, "outputs mix across the batch: 240 pairs, e.g. output 0 depends on input 1", batch=16,
            matrix=mixing(16), pairs=[[0, 1], [0, 2], [1, 0], [3, 7]]),
        "causality": verdicts.Causality(False, "output 0 depends on input 1, a future position", length=12,
                                        first_leak=[0, 1], matrix=causal.tolist()),
        "lr_range": verdicts.LrRange(None, "suggested learning rate 0.00102", lrs=lrs.tolist(),
                                     losses=losses.tolist(), suggested=0.00102, steps=60),
        "just_before_the_net": verdicts.BatchSeen(
            True, "8 x 1 x 8 x 8 float32 in [0, 1], no NaN", shape=[8, 1, 8, 8], dtype="float32", min=0.0, max=1.0,
            channels=[{"channel": 0, "mean": 0.31, "std": 0.42}], images=8),
    })


def green_checks() -> dict:
    return {name: {**c, "ok": True if c["ok"] is not None else None} for name, c in red_checks().items()}


def batch_seen() -> dict:
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (8, 1, 8, 8)).tolist(), "labels": [str(d) for d in range(8)],
            "shape": [8, 1, 8, 8]}


def watched() -> dict:
    rng = np.random.default_rng(1)
    snaps = [[step, -1.0 / (1 + step / 100), 1.0 / (1 + step / 100), rng.integers(0, 50, 32).tolist()]
             for step in range(0, 1000, 50)]
    return {"every": 50, "bins": 32, "series": {"gradients/conv.weight": snaps, "parameters/conv.weight": snaps}}


def check_run(store: Store, name: str, checks: dict, **kw) -> str:
    run = store.add_run(RunRecord(id=new_id(), name=name, model="TinyCNN", config={"loss": "cross_entropy"},
                                  status="finished", source="check", checks=checks, **kw))
    now = time.time()
    store.log_metrics(run.id, [("overfit_loss", s, v, None, now) for s, v in checks["overfit_one_batch"]["curve"]]
                      + [("loss_at_init", 0, checks["loss_at_init"]["measured"], None, now)])
    return run.id


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("check_pages_home")


@pytest.fixture(scope="module")
def planted(home):
    """A red check run with its batch and watched histograms, a green one, a hostile one, and a red run of wine."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECIPE_HOME", str(home))
    mp.delenv("RECIPE_STORE_URL", raising=False)
    settings = load_settings()
    store = Store(settings.store_url)
    ingest.ensure_samples(settings, store, SAMPLES)
    ids = {"red": check_run(store, "broken-cnn", red_checks()), "green": check_run(store, "good-cnn", green_checks())}
    store.put_json(ids["red"], "batch_seen", batch_seen())
    store.put_json(ids["red"], "watch", watched())
    ids["hostile"] = check_run(store, HOSTILE_NAME, red_checks(HOSTILE_PARAM, HOSTILE_MESSAGE))
    wine = store.get_dataset("wine")
    ids["wine"] = check_run(store, "wine-mlp-check", red_checks(), dataset_id=wine.id, target="cultivar",
                            task="classification")
    ids["app"] = store.add_run(RunRecord(
        id=new_id(), name="wine-mlp", model="mlp", config={}, dataset_id=wine.id, target="cultivar",
        task="classification", status="finished", source="app", checks=app_checks())).id
    ids["failed"] = store.add_run(RunRecord(
        id=new_id(), name="raises", model="M", config={}, status="failed", source="check",
        reason="the model raised RuntimeError: mat1 and mat2 shapes cannot be multiplied (during gradients)")).id
    yield ids
    mp.undo()


def app_checks() -> dict:
    """The checks of a run the app trained: drawn by Train's own tabs, not as a user's model's details."""
    return verdicts.to_json({
        "loss_at_init": verdicts.LossAtInit(True, "loss at init 1.10, ln 3 = 1.10", expected=1.0986, measured=1.1),
        "input_independent": verdicts.InputIndependent(True, "beats its twin", real_val_loss=0.1, twin_val_loss=1.1),
        "overfit_one_batch": verdicts.OverfitOneBatch(True, "8 rows to 0.01", n=8, steps=200, final_loss=0.01,
                                                      labels=["1"] * 8, predictions=["1"] * 8, rows=list(range(8)),
                                                      curve=[[0, 1.1], [200, 0.01]]),
        "batch_independence": verdicts.BatchIndependence(True, "example 0 reaches no other input", example=0,
                                                         batch=8, other_inputs_reached=0)})


@pytest.fixture
def at(home, planted, monkeypatch):
    return start_app(home, monkeypatch)


def open_compare(at, **params):
    at.query_params.update(params)
    at.switch_page("pages/compare.py").run()
    no_errors(at)
    return at


def figures(at) -> dict[str, dict]:
    """The page's plotly figures by their title."""
    out = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        out[spec["layout"].get("title", {}).get("text", "")] = spec
    return out


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def markdown_strings(at) -> list[str]:
    """What the page hands to the markdown renderer: bodies of markdown elements, labels and help texts."""
    out = []
    for node in [n for root in (at.main, at.sidebar) for n in walk(root)]:
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        if node.type in BODIES:
            out.append(proto.body)
        out += [getattr(proto, f) for f in ("label", "help") if hasattr(proto, f)]
    return out


def test_a_linked_check_run_opens_to_every_detail(at, planted):
    open_compare(at, runs=planted["red"])
    assert at.multiselect(key="cmp_runs").value == [planted["red"]]
    assert any(h.value == "Checks of run broken\\-cnn" for h in at.subheader)
    shown = figures(at)
    heat = shown["Which output depends on which input (the batch)"]
    assert np.array_equal(np.asarray(heat["data"][0]["customdata"], dtype=float), np.asarray(mixing(16)))
    leak = shown["Which position's output depends on which input position"]
    marked = set(zip(leak["data"][1]["y"], leak["data"][1]["x"]))  # (output, input): every leak, the first too
    assert (0, 1) in marked and all(s > t for t, s in marked)
    texts = [t.value for t in at.text]
    assert any("(output ← input), the first 4: 0 ← 1, 0 ← 2, 1 ← 0, 3 ← 7" in t for t in texts)  # the red pairs
    assert any("the output at position 0 sees the input at 1" in t for t in texts)
    assert [m.value for m in at.metric if m.label == "Suggested learning rate"] == ["0.00102"]
    lr = shown["Learning-rate range test"]
    assert lr["layout"]["shapes"][0]["x0"] == 0.00102
    grid = shown["The batch as the net saw it"]
    assert len(grid["data"]) == 8 and {t["type"] for t in grid["data"]} == {"image"}
    assert "Overfitting one batch" in shown
    assert "gradients/conv.weight over training" in shown  # the watched histograms, first series
    tables = [d.value for d in at.dataframe]
    assert any("parameter" in t and "head.unused.weight" in t["parameter"].tolist() for t in tables)
    assert any("bias" in t and t["bias"].round(4).tolist() == [1.2528, -0.539, -0.7137] for t in tables)
    assert any("the classes are imbalanced" in i.value for i in at.info)  # the init-well advice
    badges = " ".join(markdown_strings(at))
    for name in ("gradients", "overfit\\_one\\_batch", "batch\\_independence", "causality"):
        assert f":red[:material/cancel: FAIL] **{name}**" in badges


def test_the_watch_series_can_be_picked(at, planted):
    open_compare(at, runs=planted["red"])
    box = next(s for s in at.selectbox if s.label == "Series")
    assert box.options == ["gradients/conv.weight", "parameters/conv.weight"]
    box.select("parameters/conv.weight").run()
    no_errors(at)
    assert "parameters/conv.weight over training" in figures(at)


def test_the_runs_table_names_the_red_checks_and_the_filter_keeps_only_those_runs(at, planted):
    open_compare(at)
    table = at.dataframe(key="cmp_table").value
    badge = dict(zip(table["name"], table["checks"]))
    assert badge["broken-cnn"] == "FAIL gradients, overfit_one_batch, batch_independence, causality"
    assert badge["good-cnn"] == "7/7 passed"
    red = at.multiselect(key="cmp_f_red")
    assert red.options == ["gradients", "overfit_one_batch", "batch_independence", "causality"]
    red.set_value(["causality"]).run()
    no_errors(at)
    kept = set(at.dataframe(key="cmp_table").value["name"])
    assert kept == {"broken-cnn", HOSTILE_NAME, "wine-mlp-check"}  # the green run is out
    assert any(c.value.startswith("3 of 6 runs") for c in at.caption)


def test_several_charted_check_runs_get_a_picker(at, planted):
    open_compare(at, runs=f"{planted['green']},{planted['red']}")
    pick = at.selectbox(key="cmp_checks_run")
    assert pick.value == planted["green"] and not any(s.label == "Series" for s in at.selectbox)
    pick.select(planted["red"]).run()
    no_errors(at)
    assert any(h.value == "Checks of run broken\\-cnn" for h in at.subheader)
    assert any(s.label == "Series" for s in at.selectbox)


def test_trains_leaderboard_shows_the_red_checks_and_the_run_its_details(home, monkeypatch, planted):
    at = open_train(start_app(home, monkeypatch), "wine", "cultivar")
    board = at.dataframe(key="train_board").value
    assert board.set_index("run").loc["wine-mlp-check", "checks"] == \
        "FAIL gradients, overfit_one_batch, batch_independence, causality"
    at.query_params["run"] = planted["wine"]
    at.run()
    no_errors(at)
    shown = figures(at)
    assert "Which output depends on which input (the batch)" in shown and "Learning-rate range test" in shown
    assert "The batch as the net saw it" not in shown  # the wine run stored no images: its numbers only
    assert "Overfitting one batch" in shown
    assert [m.value for m in at.metric if m.label == "Suggested learning rate"] == ["0.00102"]


def test_a_run_the_app_trained_gets_no_second_drawing_of_its_checks(home, monkeypatch, planted):
    at = open_train(start_app(home, monkeypatch), "wine", "cultivar")
    at.query_params["run"] = planted["app"]
    at.run()
    no_errors(at)
    assert any("**overfit\\_one\\_batch**" in m.value for m in at.markdown)  # its badges
    shown = figures(at)
    assert "Overfitting one batch" in shown  # Train's own tab, once
    assert not any(t.startswith(("Which", "Learning-rate")) for t in shown)
    assert not any("held-out loss" in d.value for d in at.dataframe)  # its twin is a reference line instead


def test_hostile_names_and_messages_are_shown_literally(at, planted):
    open_compare(at, runs=planted["hostile"])
    shown = markdown_strings(at)
    assert f"Checks of run {markdown_literal(HOSTILE_NAME)}" in shown
    assert any(markdown_literal(HOSTILE_MESSAGE) in s for s in shown)
    assert not any("](http" in s or "<b>" in s or ":material/home:" in s for s in shown)
    params = [d.value for d in at.dataframe if "parameter" in d.value]
    assert any(HOSTILE_PARAM in t["parameter"].tolist() for t in params)  # tables show text as it is


def test_a_failed_check_run_says_why(at, planted):
    at.query_params.update(runs=planted["failed"])
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Run failed: the model raised RuntimeError\\: mat1 and mat2 shapes "
                                           "cannot be multiplied \\(during gradients\\)"]  # as text, escaped
