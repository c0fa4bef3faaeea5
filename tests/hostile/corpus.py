"""A corpus of hostile inputs, one generator per class of the hostile-input issue, each case run against the real
core (a real store, real DuckDB workers, real files).

A case passes when its input is refused cleanly (a RecipeError of one short line, in bounded time, nothing left
behind) or accepted harmlessly (its `check` proves the harm did not happen: the text is shown literally, the cell
is neutralized, the value stored safely). Anything else — a traceback, a hang, a half-written store — fails it.
The heavy cases (hundreds of MB, peak memory measured in a subprocess) live in their own tests; their small
cousins are here.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import zipfile
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Callable

import markdown

import recipe_core as rc
from recipe_core import config, csv_export, safetext
from recipe_core.compare import comparison
from recipe_core.config import Settings, TrainConfig
from recipe_core.data import ingest, rows
from recipe_core.data.db import DatasetDB
from recipe_core.data.filters import Filter, RowQuery
from recipe_core.errors import BadInput
from recipe_core.labelling import labels
from recipe_core.tracking import importers
from recipe_core.tracking.records import Comment, LabelEvent, RunRecord
from recipe_core.tracking.store import Store
from recipe_core.training import runs

ROOT = Path(__file__).resolve().parents[2]
NUL = "a\x00b"
SURROGATE = "a\ud800b"  # not encodable as UTF-8: PostgreSQL refuses it
MARKDOWN = ["![x](http://127.0.0.1:9/track)", "[link](http://127.0.0.1:9/)", "http://127.0.0.1:9/bare",
            "www.example.com", "<img src=http://127.0.0.1:9/i>", "<script>alert(1)</script>", ":red[alert]",
            "**bold** _it_ `code`", "$x^2$", "# heading", "> quote", "- item", "1. item", "| a | b |", "&lt;b&gt;",
            "\\![x](http://127.0.0.1:9/esc)", ":material/warning: x", "<a href='javascript:alert(1)'>x</a>",
            "![x](<http://127.0.0.1:9/angle>)", "[x]: http://127.0.0.1:9/ref\n\n[x]", "line\nbreak ![x](http://h/t)"]
FORMULAS = ["=HYPERLINK(\"http://x\")", "+1+2", "-3+cmd|' /C calc'!A0", "@SUM(1+1)", "\t=1", "\r=1", "=1+1"]


@dataclass
class Env:
    """What the cases attack: a home with the samples, the store, and an open dataset."""
    settings: Settings
    store: Store
    wine: object  # DatasetRecord
    db: DatasetDB
    tmp: Path
    counter: list = field(default_factory=lambda: [0])

    def fresh(self) -> str:
        self.counter[0] += 1
        return f"case{self.counter[0]}"


@dataclass(frozen=True)
class Case:
    kind: str  # the class this input belongs to
    name: str
    attack: Callable[[Env], object]  # raises a RecipeError (refused) or returns what `check` inspects
    check: Callable[[object, Env], None] | None = None  # for inputs that are accepted: prove they did no harm
    max_seconds: float = 30.0
    must_accept: bool = False  # plain input a check must not cry wolf on: refusing it fails the case


def _refused_unless(ok: Callable[[object, Env], None] | None = None):
    """For inputs that must be refused: accepting them fails the case."""
    def check(out, env):
        if ok is None:
            raise AssertionError(f"accepted what should be refused: {str(out)[:200]!r}")
        ok(out, env)
    return check


REFUSE = _refused_unless()


# -- 1. remote code execution from a page: executors ------------------------------------------------------------
def executor_cases() -> list[Case]:
    typed = ["dask://127.0.0.1:1", "dask://evil.example:8786", "tcp://127.0.0.1:8786", "ssh://x", "local ",
             "LOCAL", "local\x00", "../../etc/passwd", "a" * 10_000, "lab", "", "dask://[::1]:8786",
             "file:///etc/passwd", "dask://127.0.0.1:8786?x=1", "local;rm -rf /", "http://127.0.0.1:9"]
    out = [Case("executor", f"visitor types {t[:40]!r}", lambda env, t=t: env.settings.executor_address(t), REFUSE)
           for t in typed]
    listed = ["dask://", "x=ssh://h:1", "a=local a=local", "=dask://h:1", ",,,", "dask://h", "local lab=",
              "lab=tcp://h:1"]
    out += [Case("executor", f"operator lists {v!r}", lambda env, v=v: config.load_settings(
        {"RECIPE_HOME": str(env.tmp), "RECIPE_EXECUTORS": v}), REFUSE) for v in listed]
    return out


# -- 2. one expression that exhausts the machine: the WHERE box, filters, search, sort, paging ------------------
UNBOUNDED = [
    "length(repeat(CAST(alcohol AS VARCHAR), 50000000)) > 0", "length(repeat('a', 2000000000)) > 0",
    "printf('%0999999999d', 1) <> ''", "length(lpad('a', 1500000000, 'b')) > 0", "length(rpad('a', 1500000000)) > 0",
    "levenshtein(repeat('a', 120000), repeat('b', 120000)) > 0", "jaro_similarity(cultivar, cultivar) > 0",
    "damerau_levenshtein(cultivar, cultivar) > 0", "hamming(cultivar, cultivar) > 0",
    "format('{:>999999999}', 1) <> ''", "cultivar || cultivar || cultivar = 'x'", "concat(cultivar, cultivar) = ''",
    "concat_ws(',', cultivar, cultivar) = ''", "length(regexp_replace(cultivar, '', 'xxxxxxxx', 'g')) > 0",
    "replace(cultivar, '', repeat('x', 100)) = ''", "length(string_split(cultivar, '')) > 0",
    "list_sum(range(1000000000)) > 0", "len(generate_series(1, 1000000000)) > 0", "len(unnest([1,2])) > 0",
    "array_length(list_resize([1], 1000000000)) > 0", "length(md5(repeat(cultivar, 100000000))) > 0",
    "translate(cultivar, 'a', 'b') = ''", "length(to_base(alcohol::BIGINT, 2)) > 0", "bar(alcohol, 0, 15) <> ''",
    "length(array_to_string(list_value(cultivar), repeat(',', 100000000))) > 0", "list_aggregate([1], 'sum') > 0",
    "current_setting('memory_limit') <> ''", "getvariable('x') IS NULL", "sleep_ms(100000) IS NULL",
    "setseed(0.5) IS NULL", "random() > 2", "nextval('s') > 0", "read_text('/etc/passwd') IS NOT NULL",
    "(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "EXISTS (SELECT 1)", "alcohol IN (SELECT 1)",
    "1=1; SET memory_limit='100GB'", "1=1) UNION SELECT * FROM data --", "1=1) ORDER BY 1 LIMIT 1 --",
    "count(*) > 0", "sum(alcohol) > 0", "row_number() OVER () > 0", "list_filter([1], x -> x > 0) IS NULL",
    "COLUMNS(*) IS NULL", "main.lower(cultivar) = ''", "alcohol > ?", "alcohol > $1", "#1 > 0", "nope > 1",
    "data.alcohol > 1", "no_such_function(1)", "json_serialize_sql('SELECT 1') <> ''", "error('x') IS NULL",
    "(" * 3000 + "1" + ")" * 3000, "NOT " * 2000 + "true", "abs(" * 500 + "1" + ")" * 500 + " > 0",
    "alcohol > 1 AND " * 2000 + "true", "'" + "x" * 20000 + "' = cultivar", "\x00", "alcohol > 1 \x00",
    "alcohol > 1 /*", "SELECT 1", "DROP TABLE data", "ATTACH 'x.db'", "COPY data TO '/tmp/x.csv'",
]
HARMLESS_WHERE = ["alcohol > 13", "lower(cultivar) LIKE '%1%'", "coalesce(alcohol, 0) BETWEEN 1 AND 20",
                  "length(cultivar) < 3 AND NOT (alcohol IS NULL)", "regexp_matches(cultivar, '^[0-9]+$')",
                  "CASE WHEN alcohol > 13 THEN true ELSE false END", "abs(round(alcohol, 1)) >= 0",
                  "alcohol > 13 -- ) OR (1=1", "'é' <> cultivar", "\"alcohol\" > 1e300", "alcohol / 0 > 1"]


def _page(where: str = "", **fields):
    return lambda env: rows.page(env.db, RowQuery(where=where, **fields))


def query_cases() -> list[Case]:
    out = [Case("where", f"unbounded or escaping: {w[:50]!r}", _page(w), REFUSE, max_seconds=10) for w in UNBOUNDED]
    out += [Case("where", f"plain: {w[:50]!r}", _page(w), lambda p, env: None, must_accept=True)
            for w in HARMLESS_WHERE]
    fields = [("limit", "5; DROP"), ("limit", -1), ("limit", 0), ("limit", 10**9), ("limit", 1.5), ("limit", None),
              ("limit", True), ("limit", "50"), ("offset", -50), ("offset", 2**70), ("offset", "0"),
              ("sample_seed", "x"), ("sample_seed", -1), ("sample_seed", 2**70), ("sample_seed", 1.5),
              ("sort", "nope"), ("sort", "alcohol; DROP TABLE data"), ("sort", 5), ("descending", "yes"),
              ("search", "x" * 10_001), ("search", 5), ("where", 5), ("filters", "alcohol > 1"),
              ("filters", (("alcohol", ">", 1),))]
    out += [Case("query", f"RowQuery({k}={str(v)[:30]!r})", _page(**{k: v}), REFUSE) for k, v in fields]
    searches = ["%", "_", "\\", "'; DROP TABLE data; --", NUL, ".*", "(((", "[", "é" * 1000, "\u202e", "😀"]
    out += [Case("query", f"search {s[:20]!r}", _page(search=s), lambda p, env: None, must_accept=True)
            for s in searches]
    filters = [Filter("alcohol", ">", [1, 2]), Filter("alcohol", ">", {"a": 1}), Filter("alcohol", ">", b"x"),
               Filter("alcohol", ">", object()), Filter("alcohol", "; DROP", "1"), Filter("nope", "=", "1"),
               Filter("alcohol", "=", "abc"), Filter("alcohol", "=", ""), Filter("alcohol", "contains", ""),
               Filter("alcohol", "=", "x" * 10_001), Filter(5, "=", "1"), Filter("alcohol", 5, "1")]
    out += [Case("query", f"filter {f.column!s:.10} {f.op!s:.10} {type(f.value).__name__}",
                 _page(filters=(f,)), REFUSE) for f in filters]
    out += [Case("query", f"filter value {v!r}", _page(filters=(Filter("alcohol", ">", v),)), lambda p, env: None,
                 must_accept=True) for v in (13, 13.5, Decimal("13.5"), "13", " 13 ", "1e1", "-inf", "nan", True, 2**70)]
    out += [Case("query", f"row {r!r}", lambda env, r=r: rows.row(env.db, r), REFUSE)
            for r in ("x", None, -1, 10**30, "1; DROP", 1.5e300)]
    out += [Case("query", f"extremes of {c!r}, n={n!r}", lambda env, c=c, n=n: rows.extremes(env.db, c, n), REFUSE)
            for c, n in (("nope", 5), ("alcohol", "x"), ("alcohol", None), (NUL, 1))]
    return out


# -- 3. tiny uploads that inflate; files that are not what they say --------------------------------------------
def _ingest(data: bytes, source: str = "upload.csv", name: str | None = None):
    return lambda env: ingest.ingest_bytes(env.settings, env.store, data, source_name=source,
                                             name=name if name is not None else env.fresh())


def _deep_json(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return ('[{"a": ' + opener * depth + "1" + closer * depth + "}]").encode()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def _zip(entries: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _listed(env: Env) -> None:
    """Nothing half-written: no staged file is left behind."""
    left = [p for p in (env.settings.home / "tmp").glob("*")] if (env.settings.home / "tmp").exists() else []
    assert not left, left
    assert not list(env.settings.snapshots_dir.glob(".ingest-*"))


def ingest_cases() -> list[Case]:
    files = {
        "empty": b"", "one NUL": b"\x00", "binary": bytes(range(256)) * 100, "only a header": b"a,b\n",
        "truncated parquet": b"PAR1" + b"\x00" * 100, "parquet magic only": b"PAR1PAR1",
        "gzip in gzip": _gzip(_gzip(b"a,b\n1,2\n")), "corrupt gzip": b"\x1f\x8b" + b"\x00" * 50,
        "old xls": b"\xd0\xcf\x11\xe0" + b"\x00" * 100, "zip, not a workbook": _zip({"a.txt": b"x"}),
        "corrupt zip": b"PK\x03\x04" + b"\x00" * 100, "empty JSON array": b"[]", "JSON of scalars": b"[1, 2, 3]",
        "malformed JSON": b'[{"a": 1}, {"a": ]', "JSON nested 100,000 deep (arrays)": _deep_json(100_000),
        "JSON nested 100,000 deep (objects)": _deep_json(100_000, '{"a": ', "}"),
        "JSON Lines nested deep": b'{"a": 1}\n' + _deep_json(50_000)[1:-1] + b"\n",
        "ragged CSV": b"a,b\n1,2\n3\n4,5,6\n", "unterminated quote": b'a,b\n"1,2\n',
        "UTF-16 garbage": b"\xff\xfe" + "a,b\n1,2\n".encode("utf-16-le")[:-1],
        "a NUL in a cell": b"a,b\n1,x\x00y\n",
        "gzip bomb (decompresses past the cap)": _gzip(b"0" * (3 << 20)),
    }
    capped = {"gzip bomb (decompresses past the cap)"}
    out = []
    for label, data in files.items():
        attack = _ingest(data)
        if label in capped:  # a 3 MB bomb against a 1 MB cap stands for the 1 GB one
            attack = (lambda env, data=data: ingest.ingest_bytes(
                replace(env.settings, max_upload_bytes=1 << 20), env.store, data, source_name="bomb.csv.gz",
                name=env.fresh()))
        out.append(Case("ingest", label, attack, _refused_unless(lambda r, env: _listed(env))))
    names = [NUL, SURROGATE, "x" * 10_000, *MARKDOWN[:6]]
    out += [Case("ingest", f"dataset name {n[:30]!r}", _ingest(b"a,b\n1,2\n", name=n),
                 _refused_unless(lambda r, env: None)) for n in names]
    sources = [NUL + ".csv", "../../../etc/passwd", "C:\\Windows\\x.csv", "/abs/path.csv", "\r\n.csv", *MARKDOWN[:4]]
    out += [Case("ingest", f"source name {s[:30]!r}", _ingest(f"a,b\n1,{i}\n".encode(), source=s),
                 lambda r, env: _stored_safely(r, env), must_accept=True) for i, s in enumerate(sources)]
    headers = [NUL, "__row_id", "file_row_number", "", "a" * 100_000, '"; DROP TABLE data; --', *MARKDOWN[:3]]
    out += [Case("ingest", f"column named {h[:30]!r}", _ingest(_csv_with_header(h, i)),
                 _refused_unless(lambda r, env: _queryable(r, env))) for i, h in enumerate(headers)]
    return out


def _csv_with_header(header: str, i: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([header, header, "y"])
    writer.writerows([[1, 2, i], [3, 4, i]])
    return out.getvalue().encode()


def _stored_safely(record, env: Env) -> None:
    """A file's name is kept for display only: made storable, and never the snapshot's path (its hash is)."""
    assert "\x00" not in record.source_name and env.store.get_dataset(record.id).source_name == record.source_name
    assert record.snapshot == f"{record.id}.parquet" and (env.settings.snapshots_dir / record.snapshot).exists()
    _listed(env)


def _queryable(record, env: Env) -> None:
    db = DatasetDB(env.settings, record)
    try:
        assert rows.page(db, RowQuery(limit=5)).n_total == 2
    finally:
        db.close()


# -- 3b. imports of logs ---------------------------------------------------------------------------------------
def import_cases() -> list[Case]:
    ok_csv = b"epoch,step,loss\n0,0,1.0\n0,1,0.5\n"
    zips = {
        "not a zip": b"hello", "empty zip": _zip({}), "traversal": _zip({"../evil/metrics.csv": ok_csv}),
        "absolute path": _zip({"/etc/metrics.csv": ok_csv}), "drive path": _zip({"C:/x/metrics.csv": ok_csv}),
        "bzip2 entry": _zip({"r/metrics.csv": ok_csv}, zipfile.ZIP_BZIP2),
        "lzma entry": _zip({"r/metrics.csv": ok_csv}, zipfile.ZIP_LZMA),
        "control characters in a name": _zip({"r\x00/metrics.csv": ok_csv}),
        "no logs inside": _zip({"readme.txt": b"x"}), "metrics.csv without step": _zip({"r/metrics.csv": b"a,b\n1,2\n"}),
        "a metric named with a NUL": _zip({"r/metrics.csv": b"step,a\x00b\n0,1\n"}),
        "a 201-character metric name": _zip({"r/metrics.csv": ("step," + "m" * 201 + "\n0,1\n").encode()}),
        "a text cell where a number goes": _zip({"r/metrics.csv": b"step,loss\n0,=cmd\n"}),
        "a step of 2**70": _zip({"r/metrics.csv": f"step,loss\n{2**70},1\n".encode()}),
        "ragged metrics.csv": _zip({"r/metrics.csv": b"step,loss\n0,1,2\n"}),
        "a corrupt events file": _zip({"r/events.out.tfevents.1.host": b"\x00" * 64}),
        "hparams with python tags": _zip({"r/metrics.csv": ok_csv, "r/hparams.yaml": b"!!python/object/apply:os.system ['id']"}),
        "hparams alias bomb": _zip({"r/metrics.csv": ok_csv, "r/hparams.yaml": _yaml_bomb()}),
        "the same file twice": _zip_duplicate(),
    }
    out = []
    for label, data in zips.items():
        accept = label.startswith("hparams")  # the run imports, without the config it could not trust
        out.append(Case("import", label, lambda env, data=data: importers.import_zip(env.store, data),
                        (lambda r, env: _imported_without_config(r, env)) if accept else REFUSE))
    # a point cap stands for the 600 MB metrics.csv: refused as soon as the count passes it
    many = _zip({"r/metrics.csv": ("step,a,b\n" + "".join(f"{i},{i},{i}\n" for i in range(5000))).encode()})
    out.append(Case("import", "more points than the cap", lambda env: importers.import_zip(
        env.store, many, max_points=1000), REFUSE))
    return out


def _yaml_bomb() -> bytes:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    return "\n".join(lines).encode()


def _zip_duplicate() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("r/metrics.csv", "step,loss\n0,1\n")
        zf.writestr("r/metrics.csv", "step,loss\n0,2\n")
    return buf.getvalue()


def _imported_without_config(result, env: Env) -> None:
    run = env.store.get_run(result[0]["run_id"])
    assert run.config == {} and run.status == "finished"


# -- 4. tracebacks instead of one line: text the store cannot hold, the API, settings -------------------------
def store_cases() -> list[Case]:
    bad = [NUL, SURROGATE]
    out = []
    for text in bad:
        t = repr(text)
        out += [
            Case("store", f"run name {t}", lambda env, x=text: rc.start_run(name=x, store_url=env.store.url), REFUSE),
            Case("store", f"run author {t}", lambda env, x=text: rc.start_run(author=x, store_url=env.store.url), REFUSE),
            Case("store", f"hypothesis {t}", lambda env, x=text: rc.start_run(hypothesis=x, store_url=env.store.url),
                 REFUSE),
            Case("store", f"tag {t}", lambda env, x=text: rc.start_run(tags=[x], store_url=env.store.url), REFUSE),
            Case("store", f"parent {t}", lambda env, x=text: rc.start_run(parent=x, store_url=env.store.url), REFUSE),
            Case("store", f"dataset {t}", lambda env, x=text: rc.start_run(dataset=x, store_url=env.store.url), REFUSE),
            Case("store", f"annotator {t}", lambda env, x=text: env.store.add_label(
                LabelEvent(env.fresh(), "d", "t", 1, x, "a")), REFUSE),
            Case("store", f"label {t}", lambda env, x=text: env.store.add_label(
                LabelEvent(env.fresh(), "d", "t", 1, "ann", x)), REFUSE),
            Case("store", f"label note {t}", lambda env, x=text: env.store.add_label(
                LabelEvent(env.fresh(), "d", "t", 1, "ann", "a", note=x)), REFUSE),
            Case("store", f"comment author {t}", lambda env, x=text: env.store.add_comment(
                Comment(env.fresh(), "r", x, "t")), REFUSE),
            Case("store", f"comment {t}", lambda env, x=text: env.store.add_comment(Comment(env.fresh(), "r", "a", x)),
                 REFUSE),
            Case("store", f"note through the API {t}", lambda env, x=text: _note(env, x), REFUSE),
            Case("store", f"metric key {t}", lambda env, x=text: env.store.log_metrics("r", [(x, 1, 1.0, None, 1.0)]),
                 REFUSE),
            Case("store", f"look up run {t}", lambda env, x=text: env.store.get_run(x), REFUSE),
            Case("store", f"look up dataset {t}", lambda env, x=text: env.store.get_dataset(x), REFUSE),
            Case("store", f"histories of {t}", lambda env, x=text: env.store.histories([x], x),
                 lambda r, env: _equal(r, {})),
            Case("store", f"failure reason {t}", lambda env, x=text: _fail_with(env, x),
                 lambda r, env: _equal("\x00" in r.reason or "\ud800" in r.reason, False)),
        ]
    out += [Case("store", "config nested 100,000 deep", lambda env: rc.start_run(
        config=_nested(100_000), store_url=env.store.url), REFUSE)]
    return out


def _note(env: Env, text: str):
    with rc.start_run(name="noted", store_url=env.store.url) as run:
        run.note(text)


def _fail_with(env: Env, text: str):
    run = env.store.add_run(RunRecord(id=env.fresh(), name="x", model="m", config={}))
    env.store.update_run(run.id, status="failed", reason=f"ValueError: {text}")
    return env.store.get_run(run.id)


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _equal(got, want) -> None:
    assert got == want, (got, want)


def tracking_cases() -> list[Case]:
    logs = [((1,), {"x" * 201: 1.0}), ((1,), {"": 1.0}), ((1,), {NUL: 1.0}), ((2**64,), {"loss": 1.0}),
            ((1.5,), {"loss": 1.0}), (("1",), {"loss": 1.0}), ((True,), {"loss": 1.0}), ((None,), {"loss": 1.0}),
            ((1,), {"loss": "x"}), ((1,), {"loss": None}), ((1,), {"loss": [1]}), ((1,), {"loss": {"a": 1}}),
            ((1,), {"epoch": "x", "loss": 1.0}), ((1,), {"wall_time": "now", "loss": 1.0})]

    def log(env, args, kwargs):
        with rc.start_run(name="hostile log", store_url=env.store.url) as run:
            run.log(0, loss=1.0)
            try:
                run.log(*args, **kwargs)
            finally:
                run.log(1, loss=0.5)
        return run

    def kept(run, env):  # never reached: every one of these is refused
        raise AssertionError("accepted")

    out = [Case("tracking", f"log({args!r:.20}, {str(kwargs)[:30]})", lambda env, a=args, k=kwargs: log(env, a, k),
                _refused_unless(kept)) for args, kwargs in logs]
    # A refused point leaves the run and its other points as they were.
    out.append(Case("tracking", "the points around a refused one are kept", lambda env: _kept_around(env),
                    lambda r, env: _equal(r, ("finished", 2))))
    return out


def _kept_around(env: Env):
    with rc.start_run(name="around", store_url=env.store.url) as run:
        run.log(0, loss=1.0)
        try:
            run.log(1, **{"x" * 201: 1.0})
        except BadInput:
            pass
        run.log(2, loss=0.5)
    got = env.store.get_run(run.run_id)
    return got.status, len(env.store.histories([run.run_id], "loss")[run.run_id])


def settings_cases() -> list[Case]:
    env_values = [("RECIPE_MAX_UPLOAD_MB", "lots"), ("RECIPE_MAX_UPLOAD_MB", "-1"), ("RECIPE_MAX_UPLOAD_MB", "inf"),
                  ("RECIPE_MAX_UPLOAD_MB", "nan"), ("RECIPE_MAX_ROWS", "1.5"), ("RECIPE_MAX_ROWS", "0"),
                  ("RECIPE_MAX_CELLS", "x"), ("RECIPE_MAX_CELL_MB", "-3"), ("RECIPE_JOB_MEMORY_MB", "x"),
                  ("RECIPE_QUERY_MEMORY_MB", "0"), ("RECIPE_MAX_JOBS", "2.5"), ("RECIPE_MAX_IMPORT_POINTS", "1e400"),
                  ("RECIPE_TRAIN_THREADS", "0"), ("RECIPE_TRAIN_THREADS", "many"), ("RECIPE_EXECUTORS", "ssh://x"),
                  ("RECIPE_MAX_COLUMNS", "-1"), ("RECIPE_MAX_COLUMNS", "wide")]
    return [Case("settings", f"{k}={v!r}", lambda env, k=k, v=v: config.load_settings(
        {"RECIPE_HOME": str(env.tmp), k: v}), REFUSE) for k, v in env_values]


# -- 6. cost caps: configs that would not fit, or make no sense ---------------------------------------------------
def preflight_cases() -> list[Case]:
    configs = [dict(width=4096, depth=20), dict(width=100_000, depth=2), dict(depth=51), dict(width=0),
               dict(batch_size=0), dict(lr=math.nan), dict(lr=math.inf), dict(lr=-1.0), dict(dropout=1.5),
               dict(epochs=10**9), dict(seed=-1), dict(seed=2**40), dict(train_fraction=0.0),
               dict(train_fraction=2.0), dict(model="gbm", patience=5), dict(model="evil"), dict(task="x"),
               dict(width=True), dict(weight_decay=-1.0), dict(l2=0.0, model="linear"), dict(exclude=("nope",)),
               dict(top_k=10**6), dict(text_features=0)]
    return [Case("preflight", f"TrainConfig({', '.join(f'{k}={v!r}' for k, v in c.items())})",
                 lambda env, c=c: runs.preflight(env.settings, env.wine, "cultivar", TrainConfig(**c)), REFUSE)
            for c in configs]


# -- 7. formula cells in every CSV the app writes ------------------------------------------------------------------
def csv_cases() -> list[Case]:
    out = []
    for f in FORMULAS:
        out.append(Case("csv", f"label export, class {f!r}", lambda env, f=f: _label_export(env, f),
                        lambda text, env: _no_live_cell(text)))
        out.append(Case("csv", f"compare export, run {f!r}", lambda env, f=f: _compare_export(env, f),
                        lambda text, env: _no_live_cell(text)))
        out.append(Case("csv", f"rows export, cell and header {f!r}", lambda env, f=f: _rows_export(env, f),
                        lambda text, env: _no_live_cell(text)))
    return out


def _label_export(env: Env, value: str) -> str:
    base = labels.Baseline("d", env.fresh(), "classification", (value, "ok"), (1,), {1: value})
    env.store.add_label(LabelEvent(env.fresh(), "d", base.target, 1, value, value, note=value, features=(value,)))
    return labels.export_bytes(base, env.store.label_events("d", base.target)).decode()


def _compare_export(env: Env, value: str) -> str:
    with rc.start_run(name=value, store_url=env.store.url, tags=[value]) as run:
        run.log(0, **{value.strip() or "m": -1.0})
    key = value.strip() or "m"
    frame = comparison.histories_frame(comparison.selected_runs(env.store, [run.run_id]),
                                       comparison.load_histories(env.store, [run.run_id], [key]))
    return comparison.export_bytes(frame, "csv").decode()


def _rows_export(env: Env, value: str) -> str:
    data = io.StringIO()
    csv.writer(data).writerows([[value, "n"], [value, "-1"], ["plain", "2"]])
    record = ingest.ingest_bytes(env.settings, env.store, data.getvalue().encode(), source_name="f.csv",
                                   name=env.fresh())
    db = DatasetDB(env.settings, record)
    try:
        return rows.export_csv(db, RowQuery()).decode()
    finally:
        db.close()


def _no_live_cell(text: str) -> None:
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            try:
                float(cell)
                continue  # a number (-1 included) is not a formula
            except ValueError:
                pass
            assert not cell.startswith(csv_export.FORMULA_START), (cell, text[:300])


# -- 8. user text rendered as markdown or HTML --------------------------------------------------------------------
def markdown_cases() -> list[Case]:
    out = [Case("markdown", f"markdown_literal({m[:40]!r})", lambda env, m=m: markdown.markdown(
        safetext.markdown_literal(m), extensions=["extra"]), lambda html, env: _inert(html)) for m in MARKDOWN]
    out += [Case("markdown", f"plotly_literal({m[:40]!r})", lambda env, m=m: safetext.plotly_literal(m),
                 lambda text, env: _equal("<" in text or ">" in text, False)) for m in MARKDOWN]
    return out


def _inert(html: str) -> None:
    lowered = html.lower()
    for tag in ("<img", "<a ", "<script", "<iframe", "<h1", "<blockquote", "<li", "<table", "<strong", "<em",
                "<code"):
        assert tag not in lowered, (tag, html)


# -- 9. the server's own settings ---------------------------------------------------------------------------------
def server_cases() -> list[Case]:
    import tomllib

    def address(env):
        return tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"].get("address")

    return [Case("server", "binds loopback by default", address, lambda a, env: _equal(a, "127.0.0.1"))]


def all_cases() -> list[Case]:
    return (executor_cases() + query_cases() + ingest_cases() + import_cases() + store_cases() + tracking_cases()
            + settings_cases() + preflight_cases() + csv_cases() + markdown_cases() + server_cases())
