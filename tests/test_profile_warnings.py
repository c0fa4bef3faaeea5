"""The warnings a careful person expects: missing values with their counts, zeros that stand apart, rows named like IDs.

Each fires on a hand-built broken case with hand-computed counts, and stays quiet on a legitimate look-alike.
"""
import numpy as np
import pytest
from snapshots import kinds_of

from recipe_core.data import profile as P
from recipe_core.data import sizing

CARS = ["Mazda RX4", "Mazda RX4 Wag", "Datsun 710", "Hornet 4 Drive", "Hornet Sportabout", "Valiant", "Duster 360",
        "Merc 240D", "Merc 230", "Merc 280", "Merc 280C", "Merc 450SE", "Merc 450SL", "Merc 450SLC",
        "Cadillac Fleetwood", "Lincoln Continental", "Chrysler Imperial", "Fiat 128", "Honda Civic", "Toyota Corolla",
        "Toyota Corona", "Dodge Challenger", "AMC Javelin", "Camaro Z28", "Pontiac Firebird", "Fiat X1-9",
        "Porsche 914-2", "Lotus Europa", "Ford Pantera L", "Ferrari Dino", "Maserati Bora", "Volvo 142E"]


def gaps(n, where):
    """n values 0..n-1 as floats, with None at the given positions."""
    return [None if i in where else float(i) for i in range(n)]


# -- missing values: one line with every column's count --------------------------------------------------------

@pytest.mark.parametrize("long_max_rows", [sizing.LONG_MAX_ROWS, 10])
def test_thirteen_missing_values_in_five_columns(make, monkeypatch, long_max_rows):
    monkeypatch.setattr(sizing, "LONG_MAX_ROWS", long_max_rows)
    n = 40
    data = {
        "a": gaps(n, {1, 5, 9, 30}),  # 4
        "b": [None if i in (2, 3, 4) else f"s{i % 3}" for i in range(n)],  # 3
        "c": gaps(n, {0, 39}),  # 2
        "d": gaps(n, {10, 11}),  # 2
        "e": [None if i in (7, 8) else i % 2 == 0 for i in range(n)],  # 2
        "f": gaps(n, set()),  # none
    }
    prof = P.profile(make(data))
    (w,) = kinds_of(prof, "missing_values")
    assert w.column is None and w.value == 13
    assert w.message == "13 missing values in 5 columns: 'a' 4, 'b' 3, 'c' 2, 'd' 2, 'e' 2"
    assert not kinds_of(prof, "missing")  # none of them is mostly missing
    # and the green cases: no missing value, no warning; NaN is its own warning (nan_inf), not a missing value
    clean = P.profile(make({"x": gaps(50, set()), "s": [f"v{i % 4}" for i in range(50)]}, name="clean"))
    assert not kinds_of(clean, "missing_values") and not kinds_of(clean, "missing")
    nan_only = P.profile(make({"x": [float("nan")] + gaps(49, set())[1:] + [1.0]}, name="nan"))
    assert not kinds_of(nan_only, "missing_values")


def test_missing_values_name_ten_columns_then_count_the_rest(make):
    data = {f"c{i:02d}": gaps(30, set(range(i + 1))) for i in range(12)}  # c00 misses 1, ..., c11 misses 12
    (w,) = kinds_of(P.profile(make(data)), "missing_values")
    assert w.value == sum(range(1, 13)) == 78
    assert w.message == ("78 missing values in 12 columns: 'c11' 12, 'c10' 11, 'c09' 10, 'c08' 9, 'c07' 8, "
                         "'c06' 7, 'c05' 6, 'c04' 5, 'c03' 4, 'c02' 3, and 2 more columns")
    one = P.profile(make({"x": gaps(30, {4}), "y": gaps(30, set())}, name="one"))
    assert [w.message for w in kinds_of(one, "missing_values")] == ["1 missing value in 1 column: 'x' 1"]


# -- zeros among otherwise positive values -----------------------------------------------------------------------

def lengths(seed=0, n=200):
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(3.0, 9.0, n), 2)


def legitimate_zeros(n=200) -> dict:
    """Columns whose zeros are real values: none may be flagged."""
    rng = np.random.default_rng(2)
    change = np.round(rng.normal(0, 5, n), 1)
    change[:20] = 0.0  # zeros among negative and positive values: a change of 0
    children = rng.integers(0, 6, n)  # a count: 0 is its smallest step
    rain = np.round(rng.exponential(4.0, n), 1)
    rain[::3] = 0.0  # a dry day: positive values start near 0
    stars = rng.integers(0, 11, n) / 2  # 0, 0.5, ..., 5: zero is one step below 0.5
    concavity = np.round(rng.gamma(1.2, 0.05, n), 5) + 0.002  # skewed towards 0 (the breast-cancer sample's)
    concavity[:13] = 0.0
    assert (children == 0).any() and (stars == 0).any()
    return {"change": change.tolist(), "children": children.tolist(), "rain": rain.tolist(),
            "stars": stars.tolist(), "binary": (rng.random(n) < 0.3).astype(int).tolist(),
            "concavity": concavity.tolist()}


@pytest.mark.parametrize("long_max_rows", [sizing.LONG_MAX_ROWS, 10])  # unpivoted path, and the wide-query path
def test_zeros_that_stand_apart_are_flagged_with_their_count(make, monkeypatch, long_max_rows):
    monkeypatch.setattr(sizing, "LONG_MAX_ROWS", long_max_rows)
    z = lengths()
    z[[3, 17, 40, 41, 99, 150, 151]] = 0.0  # a length of 0: 7 zeros
    pressure = np.clip(np.round(np.random.default_rng(1).normal(72, 12, 200)), 24, None).astype(int)
    pressure[:30] = 0  # a blood pressure of 0 (the Pima diabetes table's, in small): 30 zeros
    prof = P.profile(make({"z": z.tolist(), "pressure": pressure.tolist(), **legitimate_zeros()}))
    found = {w.column: w for w in kinds_of(prof, "zeros")}
    assert set(found) == {"z", "pressure"}, [w.message for w in found.values()]  # none of the legitimate ones
    assert found["z"].value == 7 == int((z == 0).sum())
    assert found["pressure"].value == 30 == int((pressure == 0).sum())
    positive = z[z > 0]
    lowest = np.unique(positive)[:10]  # the step near 0: the mean gap between the 10 smallest distinct values
    assert lowest[0] > 3 * (lowest[-1] - lowest[0]) / 9 and lowest[0] >= 0.2 * np.median(positive)
    assert found["z"].message.startswith("'z' has 7 zeros (3.5% of rows) while its other values are all positive, "
                                         f"from {positive.min():.4g} (median {np.median(positive):.4g})")
    assert "missing values coded as 0" in found["z"].message


def test_zeros_need_enough_positive_values_to_stand_apart(make):
    tiny = P.profile(make({"v": [0.0, 0.0, 5.0, 6.0, 7.0, 8.0]}))  # 4 positive values: too few to judge
    assert not kinds_of(tiny, "zeros")
    enough = P.profile(make({"v": [0.0, 0.0, 5.0, 6.0, 7.0, 8.0, 9.0]}, name="enough"))
    assert [w.value for w in kinds_of(enough, "zeros")] == [2]


# -- ID-like: a name per row, in a small table -------------------------------------------------------------------

def test_one_name_per_row_in_a_32_row_table_is_id_like(make):
    rng = np.random.default_rng(3)
    data = {
        "model": CARS,
        "mpg": np.round(rng.uniform(10, 34, 32), 1).tolist(),
        "maker": [c.split()[0] for c in CARS],  # repeats: a category, not an ID
        "team": [f"Team {'ABCDEFGH'[i % 8]}" for i in range(32)],  # 8 values, 4 rows each
        "note": [f"the engine ran rough on day {i} and then it stopped" for i in range(32)],  # unique sentences
    }
    prof = P.profile(make(data))
    (w,) = kinds_of(prof, "id_like")  # only the model
    assert w.column == "model" and w.value == 1.0
    assert w.message == "'model' names each row, like an ID: 32 distinct values in 32 rows"
    assert len(set(CARS)) == 32 and len(set(data["maker"])) < 32
    # unique but missing in places: not one value per row
    names = [None if i == 4 else c for i, c in enumerate(CARS)]
    assert not kinds_of(P.profile(make({"model": names}, name="gappy")), "id_like")
