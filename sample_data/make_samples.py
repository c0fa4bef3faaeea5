"""Regenerate the sample datasets from data that installed packages ship (no network, deterministic).

    python sample_data/make_samples.py

scikit-learn's bundled datasets (read from files inside the package) and plotly.data. The app registers every
data file in this folder on first start (recipe_core.data.ingest.ensure_samples).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.data
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn import datasets

HERE = Path(__file__).resolve().parent

# scikit-learn calls the diabetes blood serum measurements s1..s6; its documentation names them.
DIABETES_NAMES = {"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glu"}


def breast_cancer() -> pd.DataFrame:
    """Binary classification: 30 numeric features (names with spaces), target diagnosis."""
    bunch = datasets.load_breast_cancer(as_frame=True)
    df = bunch.data.copy()
    df["diagnosis"] = bunch.target.map(dict(enumerate(bunch.target_names))).astype(str)
    return df


def wine() -> pd.DataFrame:
    """Multiclass: 13 chemical measurements, target cultivar (3 classes)."""
    bunch = datasets.load_wine(as_frame=True)
    df = bunch.data.copy()
    df["cultivar"] = bunch.target.map(dict(enumerate(bunch.target_names))).astype(str)
    return df


def diabetes() -> pd.DataFrame:
    """Regression: 10 baseline variables in original units, target disease progression one year later."""
    bunch = datasets.load_diabetes(as_frame=True, scaled=False)
    df = bunch.data.rename(columns=DIABETES_NAMES)
    df[["age", "sex"]] = df[["age", "sex"]].astype(int)
    df["disease_progression"] = bunch.target.astype(int)
    return df


def digits() -> pd.DataFrame:
    """8x8 handwritten digits: pixel_<row>_<col> with integer values 0-16, target digit."""
    bunch = datasets.load_digits(as_frame=True)
    df = bunch.data.astype(int)
    df["digit"] = bunch.target.astype(int)
    return df


def noise(n_rows: int = 600, n_features: int = 8) -> pd.DataFrame:
    """Pure noise: random features, a random label. Every model must fail the input-independent check here."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(n_rows, n_features)).round(4), columns=[f"x{i}" for i in range(n_features)])
    df["label"] = rng.choice(["a", "b"], size=n_rows)
    return df


def write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, lineterminator="\n")


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    # no pandas metadata: the file then depends only on the data and the pinned pyarrow version
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, path, compression="zstd")


def main() -> None:
    write_csv(breast_cancer(), HERE / "breast_cancer.csv")
    write_csv(wine(), HERE / "wine.csv")
    write_csv(diabetes(), HERE / "diabetes.csv")
    write_csv(plotly.data.tips(), HERE / "tips.csv")  # categorical columns: sex, smoker, day, time
    write_parquet(plotly.data.gapminder(), HERE / "gapminder.parquet")  # text (country) and categorical columns
    write_csv(digits(), HERE / "digits.csv")
    write_csv(noise(), HERE / "noise.csv")
    for path in sorted(HERE.iterdir()):
        if path.suffix in (".csv", ".parquet"):
            print(f"{path.name:24s} {path.stat().st_size / 1024:8.1f} KB")


if __name__ == "__main__":
    main()
