"""The datasets: ingest, snapshots and every query over them. The only package that imports DuckDB."""
