"""The design's boundaries, checked by walking the imports (DESIGN.md, "Boundaries")."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))  # recursive: a module moved into a package is still seen


@pytest.mark.parametrize("path", python_files("recipe_core"), ids=lambda p: p.name)
def test_core_never_imports_the_ui(path):
    assert not imported_modules(path) & {"streamlit", "ui", "pages"}


@pytest.mark.parametrize("path", python_files("recipe_core"), ids=lambda p: p.name)
def test_only_queries_and_ingestion_talk_to_duckdb(path):
    # queries.py builds every user-influenced query and query_process.py runs it (in a bounded worker);
    # datasets.py reads uploads with a private connection.
    if path.name not in ("queries.py", "query_process.py", "datasets.py"):
        assert "duckdb" not in imported_modules(path)


@pytest.mark.parametrize("path", python_files("recipe_core"), ids=lambda p: p.name)
def test_only_the_store_holds_store_sql(path):
    if path.name != "store.py":
        assert not imported_modules(path) & {"sqlalchemy", "sqlite3", "psycopg"}


@pytest.mark.parametrize("path", [ROOT / "app.py", *python_files("pages"), ROOT / "recipe_core" / "__main__.py"],
                         ids=lambda p: p.name)
def test_pages_and_cli_hold_no_sql_torch_or_sklearn(path):
    assert not imported_modules(path) & {"duckdb", "sqlalchemy", "sqlite3", "torch", "sklearn"}


def test_only_ui_caches():
    for path in [*python_files("pages"), ROOT / "app.py"]:
        assert "cache_data" not in path.read_text() and "cache_resource" not in path.read_text(), path.name


def test_the_checker_sees_a_crossing(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import streamlit as st\nfrom duckdb import connect\n")
    assert imported_modules(bad) == {"streamlit", "duckdb"}
