"""Shared fixtures: every test gets its own RECIPE_HOME (snapshots and SQLite store) under tmp_path; the store
backends, hand-made snapshots, and the real browser's server and Chromium. Plain helpers live in modules of their own
(trained.py, app_session.py, snapshots.py, planted.py, walk_data.py, recipe_walk.py)."""
import os
import resource
import uuid

# One torch thread in the test process (set before anything imports torch): its small nets gain nothing from
# more, and on 2 cores shared with the jobs, servers and browsers the tests start, more threads oversubscribe
# them (two MLP tests: 65 s with the default, 30 s with one thread, on a loaded machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from snapshots import columns_db  # noqa: E402
from trained import WINE  # noqa: E402
from walk_data import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402

from recipe_core.config import load_settings  # noqa: E402
from recipe_core.data import ingest  # noqa: E402
from recipe_core.tracking.store import Store  # noqa: E402

PG_URL = os.environ.get("RECIPE_TEST_PG_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason="no PostgreSQL"))]


@pytest.fixture(autouse=True)
def address_space_restored():
    """A test that runs a worker's entry point in-process (executors.run_queued) lowers this process's soft
    address-space limit to a job's; put it back, or a later test's Chromium, which maps far more, dies at launch."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture
def settings(tmp_path, monkeypatch):
    home = tmp_path / "recipe_home"
    home.mkdir()
    # The environment too, so code that calls load_settings() itself (CLI, pages) sees the same home.
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    monkeypatch.delenv("RECIPE_MAX_UPLOAD_MB", raising=False)
    return load_settings({"RECIPE_HOME": str(home)})


@pytest.fixture
def store(settings):
    return Store(settings.store_url)


@pytest.fixture
def wine(settings, store):
    """The wine sample, ingested into this test's store (some modules define their own, shared one)."""
    return ingest.ingest_file(settings, store, WINE)


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """A fresh store's URL: SQLite, and PostgreSQL too when RECIPE_TEST_PG_URL is set (as in CI)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'recipe.db'}"
        return
    import sqlalchemy as sa

    from recipe_core.tracking import schema

    name = "recipe_test_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    for url in [u for u in schema._engines if u.endswith("/" + name)]:
        schema._engines.pop(url).dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def make(settings):
    """make(columns, kinds=None, name="t"): a snapshot of these columns in this test's home, opened
    (snapshots.columns_db), and closed after the test."""
    opened = []

    def make(columns: dict, kinds: dict | None = None, name: str = "t"):
        db = columns_db(settings, columns, kinds, name)
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.close()


# -- the real browser (tests/test_browser*.py): one server and one Chromium per module ---------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`streamlit run app.py` on its own RECIPE_HOME: (base URL, home)."""
    home = tmp_path_factory.mktemp("recipe_home")
    with streamlit_server(home, home / "streamlit.log") as url:
        yield url, home


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # here: only the browser tests need Playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser):
    """One page of the module's Chromium, as wide as a laptop screen."""
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(60_000)
    yield pg
    pg.close()
