"""Features: training-split statistics only, one-hot top k plus other, hashed text, missing indicators, decode."""
import numpy as np
import pandas as pd
import pytest

from recipe_core.training.features import OTHER, FeatureEncoder, batch_stats

FRAME = pd.DataFrame({
    "x": [1.0, 2.0, 3.0, np.nan, 100.0],
    "color": ["red", "red", "blue", None, "green"],
    "note": ["the quick fox", "lazy dog", None, "fox fox", "dog"],
    "flag": [True, False, True, True, False],
})
TREAT = {"x": "numeric", "color": "categorical", "note": "text", "flag": "boolean"}


def test_statistics_come_from_the_training_rows_only():
    train = FRAME.iloc[:3]
    enc = FeatureEncoder(TREAT, top_k=2, text_features=16).fit(train)
    X = enc.transform(FRAME)
    x = X[:, enc.feature_names_.index("x")]
    assert x[:3].mean() == pytest.approx(0, abs=1e-6) and x[:3].std() == pytest.approx(1, abs=1e-6)
    assert x[4] == pytest.approx((100 - 2) / np.std([1, 2, 3]), rel=1e-5)  # the outlier is scaled by train stats
    assert x[3] == 0  # missing sits at the training mean; no indicator because training had no missing x
    assert "x (missing)" not in enc.feature_names_


def test_one_hot_top_k_other_and_missing_indicator():
    enc = FeatureEncoder(TREAT, top_k=1, text_features=16).fit(FRAME)
    names = enc.feature_names_
    assert [n for n in names if n.startswith("color")] == ["color=red", f"color={OTHER}", "color (missing)"]
    X = enc.transform(FRAME)
    block = X[:, [names.index("color=red"), names.index(f"color={OTHER}"), names.index("color (missing)")]]
    assert block.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]
    assert X[3, names.index("x (missing)")] == 1


def test_text_is_hashed_bag_of_words():
    enc = FeatureEncoder({"note": "text"}, text_features=32).fit(FRAME)
    X = enc.transform(FRAME)
    assert X.shape == (5, 33)  # 32 hashed + missing indicator
    assert (X[0, :32] > 0).sum() == 3 and X[2, 32] == 1
    assert np.allclose(np.linalg.norm(X[[0, 1, 3, 4], :32], axis=1), 1)


def test_decode_inverts_what_can_be_inverted():
    enc = FeatureEncoder(TREAT, top_k=5, text_features=16).fit(FRAME)
    decoded = enc.decode(enc.transform(FRAME))
    assert decoded["x"].iloc[:3].tolist() == pytest.approx([1, 2, 3])
    assert pd.isna(decoded["x"].iloc[3])
    assert decoded["color"].tolist()[:3] == ["red", "red", "blue"] and decoded["color"].iloc[3] is None
    assert decoded["flag"].tolist() == pytest.approx([1, 0, 1, 1, 0], abs=1e-6)
    assert decoded["note"].iloc[0] == "3 hashed tokens"


def test_batch_stats_flag_nan():
    X = np.array([[0.0, np.nan], [2.0, 1.0]], dtype=np.float32)
    stats = batch_stats(X, ["a", "b"])
    assert stats["nan"].tolist() == [0, 1] and stats["mean"].tolist() == pytest.approx([1.0, 1.0])
