"""The result store: older schema versions, other readers (pandas, polars, duckdb) and
compaction."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import row, store_of, suite_rows

from harness import queries
from harness.report import COLUMNS, LAYER_COLUMN, leaderboard, to_standings
from harness.store import SCHEMA, SCHEMA_VERSION, ResultStore, to_table

# ---------------------------------------------------------------------------- store tolerance and interop

def _mixed_version_store(tmp_path: Path) -> Path:
    """A store with a schema-1 file (no per-layer column, one unknown column) and a current one."""
    root = tmp_path / "mixed"
    old = to_table([row("old", "w0", 0.7)]).drop_columns([LAYER_COLUMN])
    old = old.append_column("from_the_future", pa.array(["x"])).replace_schema_metadata(
        {"eplb_harness_schema_version": "1"})
    root.mkdir()
    pq.write_table(old, root / "20250101T000000-old-0000.parquet")
    ResultStore(root).append([row("new", "w0", 0.8), row("new", "w1", 0.9)])
    return root


def test_store_reads_older_versions_and_unknown_columns(tmp_path):
    root = _mixed_version_store(tmp_path)
    table = ResultStore(root).read()
    assert len(table) == 3 and "from_the_future" in table.column_names
    assert set(SCHEMA.names) <= set(table.column_names)
    by = {r["candidate_name"]: r for r in table.to_pylist()}
    assert by["old"][LAYER_COLUMN] is None and len(by["new"][LAYER_COLUMN]) == 3
    some = ResultStore(root).read([*COLUMNS, LAYER_COLUMN])
    assert some.column_names == [*COLUMNS, LAYER_COLUMN]
    assert [s.candidate_name for s in to_standings(leaderboard(some))] == ["new", "old"]
    assert SCHEMA_VERSION >= 2 and pq.read_schema(next(root.glob("2*-r1-*.parquet"))).metadata[
        b"eplb_harness_schema_version"] == str(SCHEMA_VERSION).encode()


def test_pandas_reads_the_store(tmp_path):
    pd = pytest.importorskip("pandas")
    store = store_of(tmp_path, suite_rows())
    frame = pd.read_parquet(store.root)
    assert len(frame) == 12 and frame.groupby("candidate_name")["balancedness"].mean()["kid"] == pytest.approx(0.92)
    assert queries.to_pandas(_mixed_version_store(tmp_path)).shape[0] == 3


def test_polars_reads_the_store(tmp_path):
    pl = pytest.importorskip("polars")
    store = store_of(tmp_path, suite_rows())
    frame = pl.read_parquet(store.root / "*.parquet")
    assert frame.height == 12 and frame.filter(pl.col("candidate_name") == "kid")["balancedness"].mean() == \
        pytest.approx(0.92)
    assert frame[LAYER_COLUMN].dtype == pl.List(pl.Float64)
    files = sorted(_mixed_version_store(tmp_path).glob("*.parquet"))
    mixed = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    assert mixed.height == 3 and {"from_the_future", LAYER_COLUMN} <= set(mixed.columns)


def test_duckdb_reads_the_store(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    store = store_of(tmp_path, suite_rows())
    (count, mean), = duckdb.sql(
        f"select count(*), avg(balancedness) filter (where candidate_name = 'kid') "
        f"from read_parquet('{store.root}/*.parquet')").fetchall()
    assert count == 12 and mean == pytest.approx(0.92)
    mixed = _mixed_version_store(tmp_path)
    (rows, layers), = duckdb.sql(f"select count(*), max(len({LAYER_COLUMN})) "
                                 f"from read_parquet('{mixed}/*.parquet', union_by_name = true)").fetchall()
    assert (rows, layers) == (3, 3)


# ---------------------------------------------------------------------------- compaction and scores

def test_compact_merges_files_keeping_every_row_and_column(tmp_path, monkeypatch):
    root = _mixed_version_store(tmp_path)
    store = ResultStore(root)
    for r in suite_rows():
        store.append([r])
    before = store.read()
    stale = store.files()
    merged = store.compact()
    assert store.files() == [merged] and not list(root.glob(".*"))
    after = store.read()
    assert len(after) == len(before) == 15 and set(after.column_names) == set(before.column_names)
    assert sorted(map(str, after["candidate_name"].to_pylist())) == \
        sorted(map(str, before["candidate_name"].to_pylist()))
    metadata = pq.read_schema(merged).metadata
    assert metadata[b"eplb_harness_compacted_from_versions"] == f"1,{SCHEMA_VERSION}".encode()
    assert [s.candidate_name for s in to_standings(leaderboard(after))] == \
        [s.candidate_name for s in to_standings(leaderboard(before))]
    assert store.compact() is None  # one file: nothing to do
    (root / ".compact.lock").touch()
    store.append([row("late", "w0")])
    assert store.compact() is None and len(store.files()) == 2  # another compaction holds the lock
    (root / ".compact.lock").unlink()
    # a read that listed files a compaction then removed lists again
    listings = iter([stale, store.files()])
    monkeypatch.setattr(ResultStore, "files", lambda self: next(listings))
    assert len(store.read()) == 16


