"""What the Train page and the figures show: Enter never starts a run, a negative R² keeps its minus sign, reference
lines at one height share one label, and the learning curve's axis reads the row counts trained on."""
import json

import pandas as pd
import pytest
from app_session import open_train, start_app
from trained import trained_inline

from recipe_core import figures


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("train_display_home")


@pytest.fixture(scope="module")
def prior_run(home):
    """The prior baseline on diabetes, trained inline: its validation R² is below zero."""
    with trained_inline(home, "diabetes", "disease_progression", ("prior",)) as (_, _, (run,)):
        yield run


def blocks(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from blocks(child)


def test_enter_in_a_number_box_does_not_start_a_run(home, monkeypatch, prior_run):
    at = open_train(start_app(home, monkeypatch), "diabetes", "disease_progression")
    (form,) = [b for b in blocks(at._tree) if getattr(b, "type", None) == "form"]
    assert form.proto.form.form_id == "train_form"
    assert form.proto.form.enter_to_submit is False  # a run starts from its button only


def test_a_negative_r2_keeps_its_sign_in_the_leaderboard(home, monkeypatch, prior_run):
    assert prior_run.metrics["val_r2"] < 0
    at = open_train(start_app(home, monkeypatch), "diabetes", "disease_progression")
    board = next(d for d in at.dataframe if "val_r2" in d.value)
    assert board.value["val_r2"].iloc[0] < 0
    config = json.loads(board.proto.columns)
    r2 = config["val_r2"]
    assert r2["type_config"]["format"] == "%.3f"  # fixed decimals: "-0.012", never a clipped "0.01234"
    assert r2["width"] >= 100  # wide enough for the minus sign: a narrow column cut it off on the left
    assert all(config[c]["width"] >= 100 for c in config if c.startswith("val_"))


def test_reference_lines_of_equal_value_share_one_label():
    board = pd.DataFrame({"run": ["a", "b"], "model": ["mlp", "mlp"], "val_loss": [0.9, 1.2]})
    fig = figures.leaderboard_figure(board, {"prior": 1.0461, "input-independent": 1.0459, "human": 0.5})
    texts = [a.text for a in fig.layout.annotations]
    assert texts == ["prior = input-independent 1.046", "human 0.5"]
    assert len(fig.layout.shapes) == 2
    assert figures.merge_references({"a": 1.0, "b": 2.0, "c": 1.0}) == {"a = c": 1.0, "b": 2.0}


def test_the_learning_curve_axis_reads_the_row_counts():
    summary = pd.DataFrame({"fraction": [0.1, 0.25, 0.5, 1.0], "n_train": [12, 31, 1234, 54_321], "runs": 3,
                            "mean": [1.0, 0.9, 0.8, 0.7], "min": 0.6, "max": 1.1, "std": 0.1})
    fig = figures.learning_curve_figure(summary)
    assert fig.layout.xaxis.type == "log"
    assert list(fig.layout.xaxis.tickvals) == [12, 31, 1234, 54_321]
    assert list(fig.layout.xaxis.ticktext) == ["12", "31", "1,234", "54.3k"]
    assert [figures.rows_text(n) for n in (950, 9999, 12_345, 1_200_000)] == ["950", "9,999", "12.3k", "1.2M"]
