"""Reports over the result store: the leaderboard, one ranked row per candidate, in five
formats.

Call `leaderboard(rows, ...)` on the store's rows (`ResultStore.read(COLUMNS)`) for the
ranked Arrow table, then `render(board, fmt)` for text in any of `FORMATS`; the html
format also needs `rows=` (the selected store rows, with `LAYER_COLUMN` for its
per-layer plot). `to_standings(board)` gives the same leaderboard as `Standing` records;
`comparison(board)` says which workloads it compared (like for like by default) and which
candidates it left out, and every format says so too.

- `standings`: which rows count (`select`, `latest`) and the ranked figures (`leaderboard`).
- `comparison`: the like-for-like rule, which workloads the candidates are compared on.
- `formats`: the text renders (terminal table, Markdown, CSV, JSON).
- `html`: the self-contained HTML page with its plots.
The statistics they use (t quantiles, per-group means, the Pareto front) are in
`harness.stats`.
"""

from __future__ import annotations

import pyarrow as pa

from harness.report.comparison import Comparison, comparison
from harness.report.formats import (
    TEXT_FORMATS,
    Board,
    format_csv,
    format_json,
    format_markdown,
    format_table,
    note,
    render_text,
)
from harness.report.html import render_html
from harness.report.standings import (
    COLUMNS,
    LAYER_COLUMN,
    PER_WORKLOAD,
    REFERENCE,
    SCORES,
    SORT_KEYS,
    Standing,
    latest,
    leaderboard,
    select,
    to_standings,
)

__all__ = ["COLUMNS", "FORMATS", "LAYER_COLUMN", "PER_WORKLOAD", "REFERENCE", "SCORES", "SORT_KEYS", "Comparison",
           "Standing", "comparison", "format_csv", "format_json", "format_markdown", "format_table", "latest",
           "leaderboard", "note", "render", "select", "to_standings"]

FORMATS = (*TEXT_FORMATS, "html")


def render(board: Board, fmt: str, *, rows: pa.Table | None = None, source: str = "", filters: str = "",
           reference: str = REFERENCE, sort_by: str = "balancedness", layer_workload: str | None = None) -> str:
    """The leaderboard `board` (a `leaderboard` table or its standings) in `fmt`, one of
    `FORMATS`. Only html reads the keywords: `rows` are the store rows the board was
    ranked from (selected, any number per candidate and workload; required), the others
    its header and per-layer plot (see `render_html`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {list(FORMATS)}")
    if fmt != "html":
        return render_text(board, fmt)
    if rows is None:
        raise ValueError("the html report needs the store rows the leaderboard was ranked from (rows=)")
    standings = to_standings(board) if isinstance(board, pa.Table) else list(board)
    compared = comparison(board) if isinstance(board, pa.Table) else None
    return render_html(rows, standings, source=source, filters=filters, reference=reference, sort_by=sort_by,
                       layer_workload=layer_workload, compared=compared)
