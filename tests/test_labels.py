"""The human baseline: a fixed sample, labels as idempotent events, scores and agreement against scikit-learn,
and no acknowledged label lost to concurrent writers or a killed process."""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score

from recipe_core.data import ingest
from recipe_core.errors import BadInput, NotFound
from recipe_core.labelling import labels
from recipe_core.tracking.store import Store
from recipe_core.training import evaluation, splits

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "sample_data" / "digits.csv"


@pytest.fixture
def digits(settings, store):
    record = ingest.ingest_file(settings, store, DIGITS)
    return record, labels.baseline(settings, store, record, "digit")


def test_the_sample_is_fixed_and_from_the_validation_split(settings, store, digits):
    record, base = digits
    assert len(base.items) == 100 and len(set(base.items)) == 100
    val = set(splits.load(store.get_split(record.id, "digit")).rows("val").tolist())
    assert set(base.items) <= val
    again = labels.baseline(settings, Store(settings.store_url), record, "digit")
    assert again.items == base.items  # the same for everyone, on every visit
    raw = pd.read_csv(DIGITS)
    assert all(base.truth[i] == str(raw["digit"].iloc[i]) for i in base.items)


def test_a_resent_event_counts_once_and_the_latest_label_wins(store, digits):
    _, base = digits
    item = base.items[0]
    first = labels.add(store, base, "ann", item, "3", event_id="click-1")
    labels.add(store, base, "ann", item, "3", event_id="click-1")  # a double click / rerun
    labels.add(store, base, "ann", item, "5", note="looked again")
    events = store.label_events(base.dataset_id, base.target)
    assert len(events) == 2 and events[0].event_id == first.event_id
    current = labels.table(base, events)
    assert current[["item", "annotator", "label"]].values.tolist() == [[item, "ann", "5"]]


@pytest.mark.parametrize("label, message", [("11", "not a class"), ("", "not a class")])
def test_bad_labels_and_items_are_one_line(store, digits, label, message):
    _, base = digits
    with pytest.raises(BadInput, match=message):
        labels.add(store, base, "ann", base.items[0], label)
    with pytest.raises(NotFound, match="not in the labelling sample"):
        labels.add(store, base, "ann", -1, "3")
    with pytest.raises(BadInput, match="annotator"):
        labels.add(store, base, "  ", base.items[0], "3")
    assert store.label_events(base.dataset_id, base.target) == []


def test_scores_and_agreement_match_sklearn(store, digits):
    _, base = digits
    rng = np.random.default_rng(0)
    given = {}
    for name, error_rate in (("ann", 0.1), ("bob", 0.3), ("cem", 0.2)):
        given[name] = {}
        for item in base.items[:60]:
            truth = base.truth[item]
            label = truth if rng.random() > error_rate else str((int(truth) + 1) % 10)
            labels.add(store, base, name, item, label)
            given[name][item] = label
    out = labels.summary(base, store.label_events(base.dataset_id, base.target))
    for a in out["annotators"]:
        items = list(given[a["name"]])
        acc = accuracy_score([base.truth[i] for i in items], [given[a["name"]][i] for i in items])
        assert a["accuracy"] == pytest.approx(acc) and a["n_labelled"] == 60
        assert (a["ci_low"], a["ci_high"]) == pytest.approx(evaluation.wilson(round(acc * 60), 60))
    for pair in out["agreement"]:
        items = list(given[pair["a"]])
        kappa = cohen_kappa_score([given[pair["a"]][i] for i in items], [given[pair["b"]][i] for i in items])
        assert pair["cohen_kappa"] == pytest.approx(kappa) and pair["n_common"] == 60
    assert "fleiss_kappa" in out and -1 <= out["fleiss_kappa"] <= 1


def test_suspect_labels_are_where_people_agree_against_the_dataset(store, digits):
    _, base = digits
    wrong = str((int(base.truth[base.items[0]]) + 1) % 10)
    for name in ("ann", "bob"):
        labels.add(store, base, name, base.items[0], wrong)  # both say the dataset is wrong here
        labels.add(store, base, name, base.items[1], base.truth[base.items[1]])
    labels.add(store, base, "ann", base.items[2], wrong)  # only one person: not enough to suspect the label
    out = labels.summary(base, store.label_events(base.dataset_id, base.target))
    assert out["suspect_labels"] == [base.items[0]]


def test_import_is_all_or_nothing_and_idempotent(store, digits):
    _, base = digits
    good = "item,label,note\n" + "".join(f"{i},{base.truth[i]},=1+1\n" for i in base.items[:5])
    assert labels.import_csv(store, base, "ext", good.encode()) == 5
    assert labels.import_csv(store, base, "ext", good.encode()) == 5
    assert len(store.label_events(base.dataset_id, base.target)) == 5  # the same file twice: stored once
    bad = good + "999999,3\n"
    with pytest.raises(BadInput, match="line 7"):
        labels.import_csv(store, base, "other", bad.encode())
    with pytest.raises(BadInput, match="columns item,label"):
        labels.import_csv(store, base, "other", b"row,value\n1,2\n")
    assert {e.annotator for e in store.label_events(base.dataset_id, base.target)} == {"ext"}


def test_export_neutralizes_formulas(store, digits, tmp_path):
    _, base = digits
    labels.add(store, base, "=HYPERLINK(x)", base.items[0], "3", note="@SUM(1)")
    n = labels.export(base, store.label_events(base.dataset_id, base.target), tmp_path / "labels.csv")
    text = (tmp_path / "labels.csv").read_text()
    assert n == 1 and "'=HYPERLINK(x)" in text and "'@SUM(1)" in text
    labels.export(base, store.label_events(base.dataset_id, base.target), tmp_path / "labels.parquet")
    assert pd.read_parquet(tmp_path / "labels.parquet")["annotator"].tolist() == ["=HYPERLINK(x)"]


def test_regression_labels_score_as_mae(settings, store):
    record = ingest.ingest_file(settings, store, ROOT / "sample_data" / "diabetes.csv")
    base = labels.baseline(settings, store, record, "disease_progression", n=10)
    for item in base.items:
        labels.add(store, base, "ann", item, base.truth[item] + 10)
    out = labels.summary(base, store.label_events(base.dataset_id, base.target))
    assert out["annotators"][0]["mae"] == pytest.approx(10)
    with pytest.raises(BadInput, match="takes a number"):
        labels.add(store, base, "ann", base.items[0], "lots")


# -- nothing lost ----------------------------------------------------------------------------------------
def test_concurrent_annotators_in_threads_lose_nothing(store, digits):
    _, base = digits

    def label_all(name):
        for item in base.items:
            labels.add(store, base, name, item, base.truth[item], event_id=f"{name}-{item}")

    threads = [threading.Thread(target=label_all, args=(f"t{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = store.label_events(base.dataset_id, base.target)
    assert len(events) == 400 and len({e.event_id for e in events}) == 400


def _label_in_process(home, dataset_id, name, ack_path):
    os.environ["RECIPE_HOME"] = home
    from recipe_core.config import load_settings

    settings = load_settings()
    store = Store(settings.store_url)
    base = labels.baseline(settings, store, store.get_dataset(dataset_id), "digit")
    with open(ack_path, "a") as ack:
        for item in base.items:
            labels.add(store, base, name, item, base.truth[item], event_id=f"{name}-{item}")
            ack.write(f"{name}-{item}\n")  # acknowledged only after the store said it is stored
            ack.flush()


def test_concurrent_annotators_in_processes_lose_nothing(settings, store, digits, tmp_path):
    record, base = digits
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_label_in_process, args=(str(settings.home), record.id, f"p{k}", tmp_path / f"a{k}"))
             for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(store.label_events(base.dataset_id, base.target)) == 200


def test_a_killed_labelling_process_loses_no_acknowledged_label(settings, store, digits, tmp_path):
    record, _ = digits
    ack = tmp_path / "acks"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.test_labels import _label_in_process; "
            f"_label_in_process({str(settings.home)!r}, {record.id!r}, 'k', {str(ack)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 120
    while (not ack.exists() or len(ack.read_text().split()) < 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-session, no chance to clean up
    proc.wait(30)
    acknowledged = set(ack.read_text().split())
    stored = {e.event_id for e in Store(settings.store_url).label_events(record.id, "digit")}
    assert len(acknowledged) >= 20 and acknowledged <= stored


def test_the_human_score_is_a_reference_line_for_its_metric(store, digits):
    from recipe_core.compare import reports
    from recipe_core.tracking.records import RunRecord

    _, base = digits
    for name, wrong in (("ann", 0), ("bob", 10)):
        for k, item in enumerate(base.items[:20]):
            label = base.truth[item] if k >= wrong // 5 else str((int(base.truth[item]) + 1) % 10)
            labels.add(store, base, name, item, label)
    human = labels.summary(base, store.label_events(base.dataset_id, base.target))
    prior = RunRecord(id="r1", name="prior-1", model="prior", config={}, status="finished",
                      metrics={"val_loss": 2.3, "val_accuracy": 0.1})
    refs = reports.references([prior], "val_accuracy", human)
    assert refs["prior"] == 0.1
    assert refs["human (2 annotators, labelled sample)"] == pytest.approx((1.0 + 18 / 20) / 2)
    assert not any(k.startswith("human") for k in reports.references([prior], "val_loss", human))


def test_an_annotators_confusion_matrix(store, digits):
    _, base = digits
    a, b = base.items[:2]
    labels.add(store, base, "ann", a, base.truth[a])
    labels.add(store, base, "ann", b, "0" if base.truth[b] != "0" else "1")
    cm = np.array(labels.confusion(base, store.label_events(base.dataset_id, base.target), "ann"))
    assert cm.sum() == 2 and np.trace(cm) == 1


# -- duplicated and noisy data: distinct inputs, ambiguous inputs apart from suspect labels -----------------------
def _ingest(settings, store, tmp_path, name, frame):
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return ingest.ingest_file(settings, store, path)


def _inputs(frame, items, target="y"):
    features = [c for c in frame.columns if c != target]
    return [tuple(frame.loc[i, features]) for i in items]


def test_a_table_of_90_percent_duplicates_is_sampled_once_per_input(settings, store, tmp_path):
    # 30 inputs, each in 10 identical rows: 270 of the 300 rows (90%) are exact duplicates of another
    frame = pd.DataFrame([{"x": k, "c": f"c{k % 4}", "y": "odd" if k % 2 else "even"}
                          for k in range(30) for _ in range(10)])
    record = _ingest(settings, store, tmp_path, "dups", frame)
    base = labels.baseline(settings, store, record, "y")
    val = splits.load(store.get_split(record.id, "y")).rows("val").tolist()
    sampled = _inputs(frame, base.items)
    assert len(sampled) == len(set(sampled))  # no input asked twice
    assert set(sampled) == set(_inputs(frame, val))  # every input of the validation rows, each once
    assert set(base.items) <= set(val) and all(base.shared[i] == 10 for i in base.items)
    assert base.ambiguous == {} and base.n_ambiguous_inputs == 0  # duplicates that agree are not noise


def test_identical_inputs_with_different_targets_are_ambiguous_not_suspect(settings, store, tmp_path):
    clean = [{"x": k, "c": "u", "y": "a" if k % 2 else "b"} for k in range(60)]
    agreeing = [{"x": 100, "c": "d", "y": "a"}] * 10  # duplicated but consistent: not ambiguous
    conflicting = [{"x": 200 + k, "c": "n", "y": y} for k in range(3) for y in ["a"] * 20 + ["b"] * 10]
    frame = pd.DataFrame(clean + agreeing + conflicting)
    record = _ingest(settings, store, tmp_path, "noisy", frame)
    base = labels.baseline(settings, store, record, "y")
    noisy_inputs = {(200 + k, "n") for k in range(3)}
    assert base.n_ambiguous_inputs == 3 and base.n_ambiguous_rows == 90
    val = splits.load(store.get_split(record.id, "y")).rows("val").tolist()
    assert noisy_inputs <= set(_inputs(frame, val))  # each conflicting input has a validation row (seeded split)
    assert set(_inputs(frame, base.ambiguous)) == noisy_inputs  # exactly those, once each
    assert all(counts == {"a": 20, "b": 10} and base.shared[i] == 30 for i, counts in base.ambiguous.items())

    clean_item = next(i for i in base.items if i not in base.ambiguous)
    wrong = {i: ("b" if base.truth[i] == "a" else "a") for i in [clean_item, *base.ambiguous]}
    for name in ("ann", "bob"):  # both disagree with the row's label, on a clean input and on the noisy ones
        for item, label in wrong.items():
            labels.add(store, base, name, item, label)
    out = labels.summary(base, store.label_events(base.dataset_id, base.target))
    assert out["suspect_labels"] == [clean_item]
    assert [a["item"] for a in out["ambiguous_inputs"]] == [i for i in base.items if i in base.ambiguous]
    assert all(a["rows"] == 30 and a["dataset labels"] == "a ×20, b ×10" for a in out["ambiguous_inputs"])


def test_clean_data_has_no_ambiguous_inputs_and_keeps_its_sample(settings, store):
    record = ingest.ingest_file(settings, store, ROOT / "sample_data" / "wine.csv")
    base = labels.baseline(settings, store, record, "cultivar")
    assert base.ambiguous == {} and base.n_ambiguous_inputs == base.n_ambiguous_rows == 0
    assert set(base.shared.values()) == {1}
    val = splits.load(store.get_split(record.id, "cultivar")).rows("val")
    assert base.items == tuple(int(i) for i in np.random.default_rng(labels.SAMPLE_SEED).permutation(val)[:100])
    assert labels.summary(base, [])["ambiguous_inputs"] == []


def test_regression_inputs_with_different_targets_are_ambiguous(settings, store, tmp_path):
    frame = pd.DataFrame([{"x": float(k), "y": float(k)} for k in range(60)]
                         + [{"x": -1.0, "y": y} for y in [1.5] * 12 + [2.5] * 8])
    record = _ingest(settings, store, tmp_path, "reg", frame)
    base = labels.baseline(settings, store, record, "y", task="regression")
    assert base.n_ambiguous_inputs == 1 and base.n_ambiguous_rows == 20
    assert list(base.ambiguous.values()) == [{1.5: 12, 2.5: 8}] and frame.loc[next(iter(base.ambiguous)), "x"] == -1
    out = labels.summary(base, [])
    assert out["suspect_labels"] == [] and out["ambiguous_inputs"][0]["dataset labels"] == "1.5 ×12, 2.5 ×8"
