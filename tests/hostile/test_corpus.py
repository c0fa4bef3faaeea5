"""The hostile corpus (corpus.py) against the real core: every case refused in one line or accepted harmlessly."""
import time
from collections import Counter

import corpus
import pytest

from recipe_core.config import load_settings
from recipe_core.data import ingest, rows
from recipe_core.data.db import DatasetDB
from recipe_core.data.filters import RowQuery
from recipe_core.errors import RecipeError
from recipe_core.tracking.store import Store

CASES = corpus.all_cases()
OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("RECIPE_HOME", str(home))
    mp.delenv("RECIPE_STORE_URL", raising=False)
    settings = load_settings()
    store = Store(settings.store_url)
    wine = ingest.ingest_file(settings, store, corpus.ROOT / "sample_data" / "wine.csv")
    db = DatasetDB(settings, wine)
    yield corpus.Env(settings, store, wine, db, tmp_path_factory.mktemp("hostile_tmp"))
    db.close()
    mp.undo()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}: {c.name}" for c in CASES])
def test_refused_in_one_line_or_harmless(env, case):
    start = time.monotonic()
    try:
        out = case.attack(env)
    except RecipeError as e:
        message = str(e)
        assert "\n" not in message and 0 < len(message) <= 300, message
        assert "Traceback" not in message and "Possible Solution" not in message
        assert not case.must_accept, f"a plain input was refused: {message}"
        OUTCOMES[(case.kind, "refused")] += 1
    else:
        if case.check is not None:
            case.check(out, env)
        OUTCOMES[(case.kind, "harmless")] += 1
    assert time.monotonic() - start < case.max_seconds


def test_nothing_is_left_half_written(env):
    """After every case: no staged upload, no snapshot the catalog does not know, and the dataset still answers."""
    tmp = env.settings.home / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())
    known = {r.snapshot for r in env.store.list_datasets()}
    assert {p.name for p in env.settings.snapshots_dir.iterdir()} <= known
    assert rows.page(env.db, RowQuery(limit=1)).n_total == 178
    total = sum(OUTCOMES.values())
    if total:  # the figures for the closing note (-s shows them)
        kinds = sorted({k for k, _ in OUTCOMES})
        print(f"\nhostile corpus: {total} cases, {sum(n for (k, o), n in OUTCOMES.items() if o == 'refused')} "
              f"refused in one line, {sum(n for (k, o), n in OUTCOMES.items() if o == 'harmless')} accepted harmlessly")
        for kind in kinds:
            print(f"  {kind}: {OUTCOMES[(kind, 'refused')]} refused, {OUTCOMES[(kind, 'harmless')]} harmless")
