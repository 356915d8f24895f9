"""The leaderboard as text: a terminal table, Markdown, CSV and JSON.

Every formatter takes a `Board`: a `leaderboard` table or its `Standing` records. The
table and Markdown show `DISPLAY_HEADER`'s columns, rounded, then which workloads were
compared (`Comparison.note`, from a leaderboard table) and the failures; CSV and JSON
carry every `Standing` field at full precision, NaN as empty or null, and nothing else,
so that they parse as they are (`note(board)` gives their reader the comparison).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from harness.report.comparison import comparison
from harness.report.standings import STANDING_FIELDS, Standing

__all__ = ["DISPLAY_HEADER", "TEXT_FORMATS", "Board", "display_columns", "display_rows", "format_csv", "format_json",
           "format_markdown", "format_table", "note", "render_text"]

Board = Sequence[Standing] | pa.Table  # what the formatters take: standings or a leaderboard table
DISPLAY_HEADER = ("rank", "candidate", "status", "gpu_bal", "±95%", "replica_bal", "node_bal", "fit_gap",
                  "local_gap", "group_spread", "runtime_ms", "speedup", "score", "combined", "adrs_score",
                  "Δbal_parent", "lineage")


def note(board: Board) -> str:
    """Which workloads the leaderboard compared and who was left out ("" for standings,
    which do not carry it)."""
    compared = comparison(board) if isinstance(board, pa.Table) else None
    return compared.note() if compared else ""


def _columns(board: Board) -> dict[str, list]:
    if isinstance(board, pa.Table):
        return {k: board[k].to_pylist() for k in STANDING_FIELDS}
    return {k: [getattr(s, k) for s in board] for k in STANDING_FIELDS}


def _lineage_label(parent_hash: str, parent_name: str, diff_name: str) -> str:
    """"parent + diff" for a candidate made by a diff, "" for one that was not."""
    if not parent_hash:
        return ""
    parent = parent_name or parent_hash[:8]
    return f"{parent} + {diff_name}" if diff_name else parent


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _numbers(values: Sequence[float], digits: int, scale: float = 1.0, sign: str = "") -> list[str]:
    array = np.asarray(values, dtype=np.float64) * scale
    spec = f"{{:{sign}.{digits}f}}".format
    return [spec(v) if f else "-" for v, f in zip(array.tolist(), np.isfinite(array).tolist(), strict=True)]


def display_columns(board: Board | dict[str, list]) -> list[list[str]]:
    """The leaderboard's cells as text, column by column under `DISPLAY_HEADER` (fit_gap and
    local_gap: fit balancedness below the ceilings of any placement and of one keeping
    groups on nodes; runtime is the median over workloads, in ms; speedup is vs the
    reference, ×; score is the harness's)."""
    c = board if isinstance(board, dict) else _columns(board)
    return [
        [str(r) for r in c["rank"]], c["candidate_name"], c["statuses"],
        _numbers(c["balancedness"], 4), _numbers(c["balancedness_ci95"], 4),
        _numbers(c["replica_balancedness"], 4), _numbers(c["node_balancedness"], 4),
        _numbers(c["fit_gap_to_bound"], 4), _numbers(c["fit_gap_to_local_bound"], 4), _numbers(c["group_spread"], 2),
        _numbers(c["median_runtime_s"], 2, 1e3),
        _numbers(c["speedup_vs_reference"], 2), _numbers(c["score"], 4), _numbers(c["combined_score"], 4),
        _numbers(c["adrs_score"], 2), _numbers(c["delta_vs_parent"], 4, sign="+"),
        list(map(_lineage_label, c["parent_hash"], c["parent_name"], c["diff_name"])),
    ]


def display_rows(board: Board) -> list[tuple[str, ...]]:
    """The leaderboard's cells as text, row by row (see `display_columns`)."""
    return list(zip(*display_columns(board), strict=True)) if len(board) else []


def _failures(c: dict[str, list], limit: int) -> list[tuple[str, str]]:
    pairs = zip(c["candidate_name"], c["first_error"], strict=True)
    return [(name, _one_line(error, limit)) for name, error in pairs if error]


def format_table(board: Board) -> str:
    """The leaderboard as a fixed-width terminal table, failures listed below it."""
    c = _columns(board)
    left = {0, 1, 2, len(DISPLAY_HEADER) - 1}
    padded = []
    for i, (head, cells) in enumerate(zip(DISPLAY_HEADER, display_columns(c), strict=True)):
        width = max(len(head), max(map(len, cells), default=0))
        pad = str.ljust if i in left else str.rjust
        padded.append([pad(head, width)] + [pad(cell, width) for cell in cells])
    text = ["  ".join(line).rstrip() for line in zip(*padded, strict=True)]
    compared = note(board)
    errors = [f"  {name}: {error}" for name, error in _failures(c, 160)]
    return "\n".join(text + ([compared] if compared else []) +
                     (["failures (first per candidate):"] + errors if errors else []))


def format_markdown(board: Board) -> str:
    """The leaderboard as a GitHub-flavoured Markdown table, failures listed below it."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|") or " "

    c = _columns(board)
    right = "|".join("---:" if i not in (1, 2, len(DISPLAY_HEADER) - 1) else "---" for i in range(len(DISPLAY_HEADER)))
    lines = ["| " + " | ".join(DISPLAY_HEADER) + " |", f"|{right}|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in zip(*display_columns(c), strict=True)]
    compared = note(board)
    errors = [f"- `{name}`: {cell(error)}" for name, error in _failures(c, 300)]
    return "\n".join(lines + (["", compared] if compared else []) +
                     (["", "Failures (first per candidate):", ""] + errors if errors else []))


def _plain(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def format_csv(board: Board) -> str:
    """Every `Standing` field, full precision; NaN as an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STANDING_FIELDS)
    for row in zip(*_columns(board).values(), strict=True):
        writer.writerow(["" if _plain(v) is None else v for v in row])
    return out.getvalue()


def format_json(board: Board) -> str:
    """A JSON list of every `Standing` field, NaN as null."""
    c = _columns(board)
    rows = zip(*c.values(), strict=True)
    return json.dumps([{k: _plain(v) for k, v in zip(STANDING_FIELDS, row, strict=True)} for row in rows], indent=2)


_RENDERERS = {"table": format_table, "markdown": format_markdown, "csv": format_csv, "json": format_json}
TEXT_FORMATS = tuple(_RENDERERS)


def render_text(board: Board, fmt: str) -> str:
    """The leaderboard in one of `TEXT_FORMATS`."""
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown text format {fmt!r}; one of {list(TEXT_FORMATS)}")
    return _RENDERERS[fmt](board)
