"""The result store: append-only Parquet files under one folder (default `results/`).

Every append writes one new file, atomically (a hidden temporary file renamed into
place), so a run killed at any moment leaves only whole files, several runs can append
at once without locks, and pandas, polars, duckdb and pyarrow read the folder as is.

The schema is declared once, here, from `EvalResult`'s fields, and versioned:
- 1: first release (DESIGN.md's required columns, lineage, timing statistics).
Readers accept files of any version: columns a file lacks read as null, extra columns
are kept.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.results import EvalResult

SCHEMA_VERSION = 1
_ARROW_TYPES = {
    "str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
}
SCHEMA = pa.schema(
    [pa.field(f.name, _ARROW_TYPES[f.type]) for f in dataclasses.fields(EvalResult)],
    metadata={"eplb_harness_schema_version": str(SCHEMA_VERSION)},
)
KEY_COLUMNS = ("candidate_hash", "workload_id", "settings_hash")


def to_table(rows: Sequence[EvalResult]) -> pa.Table:
    return pa.Table.from_pylist([dataclasses.asdict(row) for row in rows], schema=SCHEMA)


class ResultStore:
    """A folder of Parquet result files."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise HarnessError(f"result store {self.root} is a file, not a folder")

    def files(self) -> list[Path]:
        return sorted(self.root.glob("*.parquet")) if self.root.is_dir() else []

    def append(self, rows: Sequence[EvalResult]) -> Path:
        """Write `rows` as one new file; return its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        final = self.root / f"{stamp}-{rows[0].run_id}-{uuid.uuid4().hex[:8]}.parquet"
        partial = self.root / f".{final.name}.partial"
        pq.write_table(to_table(rows), partial)
        os.replace(partial, final)
        return final

    def read(self, columns: Iterable[str] | None = None) -> pa.Table:
        """Every stored row (of the given columns), files of older versions included."""
        wanted = list(columns) if columns is not None else None
        tables = []
        for path in self.files():
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise HarnessError(f"result file {path} cannot be read: {exc}") from exc
            tables.append(table)
        if not tables:
            return SCHEMA.empty_table() if wanted is None else SCHEMA.empty_table().select(wanted)
        table = pa.concat_tables(tables, promote_options="permissive")
        for field in SCHEMA:
            if field.name not in table.column_names:
                table = table.append_column(field, pa.nulls(len(table), field.type))
        return table if wanted is None else table.select(wanted)

    def stored_keys(self) -> set[tuple[str, str, str]]:
        """(candidate_hash, workload_id, settings_hash) of every stored evaluation."""
        table = self.read(KEY_COLUMNS)
        return set(zip(*(table[column].to_pylist() for column in KEY_COLUMNS)))
