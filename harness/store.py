"""The result store: append-only Parquet files under one folder (default `results/`).

Every append writes one new file, atomically (a hidden temporary file renamed into
place), so a run killed at any moment leaves only whole files, several runs can append
at once without locks, and pandas, polars, duckdb and pyarrow read the folder as is.

The schema is declared once, here, from `EvalResult`'s fields, and versioned (the
version is in each file's schema metadata, key `eplb_harness_schema_version`):
- 1: first release (DESIGN.md's required columns, lineage, timing statistics).
- 2: `gpu_max_over_mean_per_layer` (list<double>): per layer, max over mean GPU load,
  mean over the window pairs; empty for failed rows. The HTML report plots it.
- 3: `stdout_tail`: the last 4 KiB the worker wrote to stdout, beside `stderr_tail`.
- 4: paired timing and deadlines: `speedup_vs_reference` is now the median of per-pair
  ratios with the reference timed call by call beside the candidate, with
  `speedup_ci95_low`/`_high` and `reference_runtime_s`; `score` (balance and paired
  speedup, see README); `deadline_s` and `deadline_rule` (the limit the evaluation had);
  the workload's ceilings `bound_balancedness`, `local_bound_balancedness` and
  `local_bound_method` (harness.bounds); `confinement`, how the candidate's process was
  confined (`namespaces` or `process`, empty when no worker ran).
- 5: turns of several calls: each timing sample is the mean of a turn's back-to-back
  calls, `runtime_calls_per_sample` of the candidate's and `reference_calls_per_sample`
  of the reference's.
Readers accept files of any version: columns a file lacks read as null, extra columns
are kept (`read(columns=...)` reads only the columns asked for, from each file that has
them).
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.files import write_atomically
from harness.results import EvalResult

SCHEMA_VERSION = 5
_ARROW_TYPES = {
    "str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"), "tuple[float, ...]": pa.list_(pa.float64()),
}
SCHEMA = pa.schema(
    [pa.field(f.name, _ARROW_TYPES[f.type]) for f in dataclasses.fields(EvalResult)],
    metadata={"eplb_harness_schema_version": str(SCHEMA_VERSION)},
)
KEY_COLUMNS = ("candidate_hash", "workload_id", "settings_hash")
# Writers merge the store once it holds this many files: reading costs about a
# millisecond per file, and a search appends a file per evaluation.
AUTO_COMPACT_FILES = 256


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
        """Write `rows` as one new file; return its path. A folder that cannot be written
        is the user's to fix: HarnessError."""
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        final = self.root / f"{stamp}-{rows[0].run_id}-{uuid.uuid4().hex[:8]}.parquet"
        table = to_table(rows)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return write_atomically(final, lambda file: pq.write_table(table, file))
        except OSError as exc:
            raise HarnessError(f"result store {self.root} cannot be written: {exc.strerror or exc}") from exc

    def read(self, columns: Iterable[str] | None = None) -> pa.Table:
        """Every stored row (of the given columns), files of older versions included."""
        wanted = list(columns) if columns is not None else None
        for attempt in range(3):
            try:
                return self._read_files(self.files(), wanted)
            except FileNotFoundError:  # `compact` replaced files after we listed them: list again
                if attempt == 2:
                    raise

    def compact(self, min_files: int = 2) -> Path | None:
        """Merge every file of the store into one (written atomically before the merged
        files are removed), when there are at least `min_files`; return the new file.

        Reading costs about a millisecond per file whatever its size, and `run` writes a
        file per evaluation, so a long search's store reads faster compacted. Safe beside
        appends (files written meanwhile are left alone) and reads (a read that finds a
        listed file gone lists again; one between the write and the removal sees rows
        twice, which `latest` folds). One compaction at a time, by a lock file."""
        if not self.root.is_dir():
            return None
        lock = self.root / ".compact.lock"
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if time.time() - lock.stat().st_mtime < 3600:
                return None  # another compaction is under way
            lock.unlink(missing_ok=True)  # left by a compaction that died
            return self.compact(min_files)
        try:
            files = self.files()
            if len(files) < max(min_files, 1):
                return None
            versions: set[str] = set()
            table = self._read_files(files, None, versions)
            table = table.replace_schema_metadata({"eplb_harness_schema_version": str(SCHEMA_VERSION),
                                                   "eplb_harness_compacted_from_versions": ",".join(sorted(versions))})
            stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
            final = write_atomically(self.root / f"{stamp}-compacted-{uuid.uuid4().hex[:8]}.parquet",
                                     lambda file: pq.write_table(table, file))
            for path in files:
                path.unlink(missing_ok=True)
            return final
        finally:
            os.close(handle)
            lock.unlink(missing_ok=True)

    def _read_files(self, files: list[Path], wanted: list[str] | None, versions: set[str] | None = None) -> pa.Table:
        tables = []
        for path in files:
            try:
                with pq.ParquetFile(path) as file:
                    present = file.schema_arrow.names
                    if versions is not None:
                        metadata = file.schema_arrow.metadata or {}
                        versions.add(metadata.get(b"eplb_harness_schema_version", b"?").decode())
                    table = file.read(columns=None if wanted is None else [c for c in wanted if c in present])
            except FileNotFoundError:
                raise
            except (OSError, pa.ArrowInvalid) as exc:
                raise HarnessError(f"result file {path} cannot be read: {exc}") from exc
            tables.append(table)
        if not tables:
            # Not SCHEMA.empty_table(): it imports pandas (0.26 s), here where a run starts.
            empty = pa.Table.from_batches([], schema=SCHEMA)
            return empty if wanted is None else empty.select(wanted)
        table = pa.concat_tables(tables, promote_options="permissive")
        for field in SCHEMA:
            if field.name not in table.column_names and (wanted is None or field.name in wanted):
                table = table.append_column(field, pa.nulls(len(table), field.type))
        return table if wanted is None else table.select(wanted)

    def stored_keys(self) -> set[tuple[str, str, str]]:
        """(candidate_hash, workload_id, settings_hash) of every stored evaluation."""
        table = self.read(KEY_COLUMNS)
        return set(zip(*(table[column].to_pylist() for column in KEY_COLUMNS), strict=True))
