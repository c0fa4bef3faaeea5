"""The architecture's rules (ARCHITECTURE.md), checked by walking every import of every module, recursively."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "recipe_core"
MAX_CORE_LINES = 500
MAX_PAGE_LINES = 150

# package -> the libraries only it may import
OWNERS = {"data": {"duckdb"}, "training": {"torch", "sklearn"}, "tracking": {"sqlalchemy", "sqlite3", "psycopg"}}
# The packages in layers: each imports only the ones before it ("" is the small shared modules at the top).
# compat (the W&B shim, the Lightning callback) is an entry point for a user's script, above what it uses.
LAYERS = ["", "data", "tracking", "training", "labelling", "compare", "search", "compat", "cli"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def runtime_imports(path: Path) -> set[str]:
    """Packages of recipe_core imported at run time (not those imported for type hints only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # drop `if TYPE_CHECKING:` blocks
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    names = set()
    for node in ast.walk(tree):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        for module in modules:
            parts = module.split(".")
            if parts[0] == "recipe_core" and len(parts) > 1:
                names.add(parts[1] if parts[1] in LAYERS else "")
    return names


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))  # recursive: a module moved into a package is still seen


def package_of(path: Path) -> str:
    parts = path.relative_to(CORE).parts
    return parts[0] if len(parts) > 1 else ""


CORE_FILES = python_files(CORE)


def short(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", CORE_FILES, ids=short)
def test_core_never_imports_the_ui(path):
    assert not imported_modules(path) & {"streamlit", "ui", "views", "pages"}


@pytest.mark.parametrize("path", CORE_FILES, ids=short)
def test_each_library_family_lives_in_one_package(path):
    for package, libraries in OWNERS.items():
        if package_of(path) != package:
            assert not imported_modules(path) & libraries, f"only recipe_core/{package}/ imports {libraries}"


@pytest.mark.parametrize("path", CORE_FILES, ids=short)
def test_packages_import_only_the_layers_below(path):
    own = package_of(path)
    above = set(LAYERS[LAYERS.index(own) + 1:])
    # The top's __init__ (start_run, check_model), __main__ (the CLI, a job's exit) and testing (assert_recipe, for
    # a user's pytest) are entry points, not shared modules.
    if path.name in ("__init__.py", "__main__.py", "testing.py") and not own:
        return
    assert not runtime_imports(path) & above, f"{short(path)} imports a package above {own or 'the shared modules'}"


@pytest.mark.parametrize("path", CORE_FILES, ids=short)
def test_core_modules_stay_small(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_CORE_LINES


@pytest.mark.parametrize("path", [ROOT / "app.py", *python_files(ROOT / "pages")], ids=short)
def test_pages_are_short_scripts(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_PAGE_LINES


@pytest.mark.parametrize("path", [ROOT / "app.py", ROOT / "ui.py", *python_files(ROOT / "pages"),
                                  *python_files(ROOT / "views"), *python_files(CORE / "cli")], ids=short)
def test_pages_and_cli_hold_no_sql_torch_or_sklearn(path):
    assert not imported_modules(path) & {"duckdb", "sqlalchemy", "sqlite3", "torch", "sklearn", "optuna"}


def test_only_ui_caches():
    for path in [*python_files(ROOT / "pages"), ROOT / "app.py", *python_files(CORE)]:
        text = path.read_text(encoding="utf-8")
        assert "cache_data" not in text and "cache_resource" not in text, path.name


@pytest.mark.parametrize("module", ["recipe_core.labelling.labels", "recipe_core.labelling.agreement",
                                    "recipe_core.data.profile", "recipe_core.data.rows", "recipe_core.tracking.store",
                                    "recipe_core.compare.comparison", "recipe_core.cli"])
def test_modules_that_never_train_never_load_torch(module):
    # A cold import in a fresh interpreter: what a CLI command or the Label page pays before its first line.
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'sklearn', 'optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_checker_sees_a_crossing(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import streamlit as st\nfrom duckdb import connect\n")
    assert imported_modules(bad) == {"streamlit", "duckdb"}


def test_the_walk_sees_nested_packages():
    assert any(len(p.relative_to(CORE).parts) > 1 for p in CORE_FILES)
    assert {package_of(p) for p in CORE_FILES} >= {"data", "training", "tracking", "labelling", "compare", "search"}


def test_the_layer_checker_sees_an_upward_import_but_not_a_type_hint(tmp_path):
    upward = tmp_path / "upward.py"
    upward.write_text("from recipe_core.tracking.store import Store\nfrom recipe_core.errors import BadInput\n")
    hinted = tmp_path / "hinted.py"
    hinted.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from recipe_core.search import x\n")
    assert runtime_imports(upward) == {"tracking", ""}
    assert runtime_imports(hinted) == set()
