"""The HTML report: one self-contained file (CSS inline, plots as base64 PNG, no network)
that a browser opens offline.

Sections: key findings, the leaderboard table, GPU balancedness against runtime with
the Pareto front, a candidates x workloads heatmap, the per-layer GPU load of the best
candidate against the reference on one workload, and the lineage tree of diffs. Plots
are drawn by matplotlib's Agg renderer through `Figure` objects (no pyplot state).
Everything comes from the store's rows; the per-layer plot needs the
`gpu_max_over_mean_per_layer` column (schema version 2).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.report.comparison import Comparison
from harness.report.formats import DISPLAY_HEADER, display_rows
from harness.report.standings import LAYER_COLUMN, PER_WORKLOAD, REFERENCE, Standing, latest
from harness.stats import pareto_mask

__all__ = ["render_html"]

MAX_HEATMAP_ROWS = 30
MAX_HEATMAP_COLUMNS = 40
MAX_LABELS = 12
MAX_TREE_NODES = 300

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1280px;
       color: #1f2328; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta { color: #57606a; font-size: 0.9em; }
table.board { border-collapse: collapse; font-size: 0.82em; font-variant-numeric: tabular-nums; }
table.board th, table.board td { border: 1px solid #d0d7de; padding: 3px 7px; white-space: nowrap; }
table.board th { background: #f6f8fa; position: sticky; top: 0; }
table.board td.num { text-align: right; }
table.board tr.failed td { background: #fff1f0; }
table.board tr.reference td { background: #f0f6ff; }
table.board td.lineage { white-space: normal; min-width: 180px; }
table.board td.err { white-space: normal; max-width: 420px; color: #a40e26; font-family: monospace; font-size: 0.95em; }
.scroll { overflow-x: auto; max-height: 70vh; overflow-y: auto; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: 0.88em; max-width: 900px; }
ul.tree, ul.tree ul { list-style: none; padding-left: 1.4em; border-left: 1px dashed #afb8c1; margin: 2px 0; }
ul.tree { border-left: none; padding-left: 0; }
ul.tree li { margin: 3px 0; }
.up { color: #1a7f37; font-weight: 600; } .down { color: #cf222e; font-weight: 600; } .flat { color: #57606a; }
.tag { font-size: 0.8em; color: #57606a; }
.findings li { margin: 4px 0; }
p.note { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; border-radius: 4px; }
"""

# Marks the page with how many of its images decoded (a browser test reads it).
_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) { if (images[i].complete && images[i].naturalWidth > 0) decoded++; }
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-images-decoded", decoded);
});
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _short(text: str, limit: int = 36) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(png: str, alt: str, caption: str) -> str:
    return (f'<figure><img alt="{_esc(alt)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # Agg canvas on savefig; no pyplot, no display

    return Figure(figsize=(width, height), layout="constrained")


# ---------------------------------------------------------------------------- sections

def _findings(standings: Sequence[Standing], reference: str, front: set[str]) -> str:
    items = []
    ok = [s for s in standings if s.ok and not s.first_error]
    failing = [s for s in standings if s.first_error]
    ref = next((s for s in standings if s.candidate_name == reference), None)
    if ok:
        best = ok[0]
        ci = f" ± {best.balancedness_ci95:.4f}" if math.isfinite(best.balancedness_ci95) else ""
        text = (f"Best by the sort key: <b>{_esc(best.candidate_name)}</b>, GPU balancedness "
                f"{best.balancedness:.4f}{ci} (95% interval over {best.ok} workloads), median runtime "
                f"{best.median_runtime_s * 1e3:.2f} ms")
        if ref is not None and ref is not best and math.isfinite(ref.balancedness):
            text += f"; vs the reference {_esc(reference)}: {best.balancedness - ref.balancedness:+.4f} balancedness"
            if math.isfinite(best.speedup_vs_reference):
                text += f", {best.speedup_vs_reference:.2f}× its speed"
        items.append(text + ".")
    if ref is not None and math.isfinite(ref.balancedness):
        others = [s for s in ok if s is not ref]
        better = sum(1 for s in others if s.balancedness > ref.balancedness)
        items.append(f"{better} of {len(others)} other fully-ok candidates balance better than the reference "
                     f"({ref.balancedness:.4f}).")
    elif ref is None:
        items.append(f"The reference {_esc(reference)} is not among these rows: no speedups.")
    if front:
        named = ", ".join(f"<b>{_esc(name)}</b>" for name in sorted(front)[:MAX_LABELS])
        items.append(f"Pareto front (balancedness up, runtime down): {named}{'…' if len(front) > MAX_LABELS else ''}.")
    if failing:
        items.append(f"{len(failing)} candidate(s) failed on at least one workload; they rank last and are listed "
                     f"with their first error.")
    return '<ul class="findings">' + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _table(standings: Sequence[Standing], reference: str) -> str:
    header = "".join(f"<th>{_esc(h)}</th>" for h in (*DISPLAY_HEADER, "first error"))
    body = []
    for s, cells in zip(standings, display_rows(standings), strict=True):
        kind = "failed" if s.first_error else "reference" if s.candidate_name == reference else ""
        tds = "".join(f'<td class="{"lineage" if i == len(cells) - 1 else "" if i in (1, 2) else "num"}" '
                      f'title="{_esc(s.candidate_hash) if i == 1 else ""}">{_esc(c)}</td>'
                      for i, c in enumerate(cells))
        error = _esc(_short(s.first_error, 300)) if s.first_error else ""
        body.append(f'<tr class="{kind}">{tds}<td class="err" title="{_esc(s.first_error)}">{error}</td></tr>')
    return (f'<div class="scroll"><table class="board"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _scatter(standings: Sequence[Standing], reference: str) -> tuple[str, set[str]]:
    clean = [s for s in standings if s.ok and not s.first_error and math.isfinite(s.balancedness)
             and math.isfinite(s.median_runtime_s) and s.median_runtime_s > 0]
    partial = [s for s in standings if s.ok and s.first_error and math.isfinite(s.balancedness)
               and math.isfinite(s.median_runtime_s) and s.median_runtime_s > 0]
    if not clean and not partial:
        return "<p>No candidate has an ok workload with a runtime: nothing to plot.</p>", set()
    values = np.array([[s.balancedness, s.median_runtime_s] for s in clean]).reshape(-1, 2)
    on_front = pareto_mask(values, (True, False))
    front = {s.candidate_name for s, f in zip(clean, on_front, strict=True) if f}
    figure = _new_figure(9.5, 5.6)
    axes = figure.add_subplot()
    x = values[:, 1] * 1e3
    y = values[:, 0]
    small = len(clean) <= 60
    axes.scatter(x[~on_front], y[~on_front], s=22 if small else 8, color="#5b7fa6", alpha=0.8 if small else 0.4,
                 label="candidate", zorder=2)
    if on_front.any():
        order = np.argsort(x[on_front])
        fx, fy = x[on_front][order], y[on_front][order]
        axes.step(fx, fy, where="post", color="#d1242f", linewidth=1.2, alpha=0.7, zorder=3)
        axes.scatter(fx, fy, s=46, color="#d1242f", edgecolor="white", linewidth=0.8, label="Pareto front", zorder=4)
    if partial:
        axes.scatter([s.median_runtime_s * 1e3 for s in partial], [s.balancedness for s in partial], marker="x",
                     s=30, color="#bf8700", label="some workloads failed (mean over the rest)", zorder=2)
    ref = next((s for s in clean + partial if s.candidate_name == reference), None)
    if ref is not None:
        axes.scatter([ref.median_runtime_s * 1e3], [ref.balancedness], marker="*", s=220, color="black",
                     label=f"reference ({reference})", zorder=5)
    labelled = [s for s, f in zip(clean, on_front, strict=True) if f][:MAX_LABELS]
    labelled += [s for s in clean[:3] if s not in labelled]  # the top of the table too
    if ref is not None and ref not in labelled:
        labelled.append(ref)
    for s in labelled:
        axes.annotate(_short(s.candidate_name, 30), (s.median_runtime_s * 1e3, s.balancedness),
                      xytext=(6, 5), textcoords="offset points", fontsize=8)
    if len(clean) >= 2:  # the fully-ok candidates set the range; crosses outside it are left out
        low, high = float(y.min()), float(y.max())
        pad = max((high - low) * 0.08, 0.005)
        axes.set_ylim(low - pad, high + pad)
    axes.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if str(f"{value:g}")[0] in "25" else ""))
    axes.set_xlabel("median runtime per call (ms, log scale)")
    axes.set_ylabel("GPU balancedness (mean over workloads)")
    axes.grid(True, which="both", alpha=0.25)
    axes.legend(loc="lower left", fontsize=8, framealpha=0.9)
    axes.set_title("Balancedness vs runtime: up and left is better")
    caption = (f"Each point is a candidate with no failed workload ({len(clean)}); its 95% interval over "
               f"workloads is in the table. Crosses: candidates with a failed workload, their mean over the rest, "
               f"where it falls within the others' range. Red: the Pareto front, candidates no other beats on both "
               f"balancedness and runtime ({len(front)}). Runtime is the median over workloads of each "
               f"workload's median call time.")
    return _figure(_png(figure), "balancedness against runtime with the Pareto front", caption), front


def _heatmap(rows: pa.Table, standings: Sequence[Standing], reference: str) -> str:
    if len(rows) == 0:
        return "<p>No rows.</p>"
    shown = list(standings[:MAX_HEATMAP_ROWS])
    ref = next((s for s in standings if s.candidate_name == reference), None)
    if ref is not None and ref not in shown:
        shown.append(ref)
    wanted = {s.candidate_hash for s in shown}
    rows = rows.filter(pc.is_in(rows["candidate_hash"], value_set=pa.array(sorted(wanted), type=pa.string())))
    data = rows.select(["candidate_hash", "workload_id", "workload_name", "status", "balancedness"]).to_pylist()
    workloads = sorted({(r["workload_name"] or r["workload_id"], r["workload_id"]) for r in data})
    labels = [name for name, _ in workloads]
    if len(set(labels)) < len(labels):
        labels = [wid for _, wid in workloads]
    columns = {wid: j for j, (_, wid) in enumerate(workloads[:MAX_HEATMAP_COLUMNS])}
    labels = labels[:MAX_HEATMAP_COLUMNS]
    index = {s.candidate_hash: i for i, s in enumerate(shown)}
    value = np.full((len(shown), len(columns)), np.nan)
    status = np.full((len(shown), len(columns)), "", dtype=object)
    for r in data:
        j = columns.get(r["workload_id"])
        if j is None:
            continue
        i = index[r["candidate_hash"]]
        status[i, j] = r["status"]
        if r["status"] == "ok" and r["balancedness"] is not None:
            value[i, j] = r["balancedness"]
    relative = ref is not None and index.get(ref.candidate_hash) is not None
    colour = value - value[index[ref.candidate_hash]][None, :] if relative else value
    figure = _new_figure(min(3 + 0.9 * len(columns), 18), min(1.6 + 0.32 * len(shown), 14))
    axes = figure.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["RdBu" if relative else "viridis"].with_extremes(bad="#d0d7de")
    masked = np.ma.masked_invalid(colour)
    if relative:
        span = np.nanmax(np.abs(colour)) if np.isfinite(colour).any() else 0.0
        span = span if span > 0 else 0.01
        image = axes.imshow(masked, cmap=cmap, vmin=-span, vmax=span, aspect="auto")
        figure.colorbar(image, ax=axes, label=f"GPU balancedness minus {reference}'s on the workload")
    else:
        image = axes.imshow(masked, cmap=cmap, aspect="auto")
        figure.colorbar(image, ax=axes, label="GPU balancedness")
    if value.size <= 600:
        norm = image.norm
        for i in range(len(shown)):
            for j in range(len(columns)):
                text = f"{value[i, j]:.3f}" if np.isfinite(value[i, j]) else (status[i, j] or "")
                shade = norm(colour[i, j]) if np.isfinite(colour[i, j]) else 0.5
                dark = shade < 0.2 or shade > 0.8 if relative else shade < 0.45
                axes.text(j, i, text, ha="center", va="center", fontsize=7,
                          color="#a40e26" if not np.isfinite(value[i, j]) else "white" if dark else "black")
    axes.set_xticks(range(len(columns)), [_short(lab, 28) for lab in labels], rotation=35, ha="right", fontsize=8)
    axes.set_yticks(range(len(shown)), [f"{s.rank}. {_short(s.candidate_name, 34)}" for s in shown], fontsize=8)
    axes.set_title("GPU balancedness per candidate and workload")
    more = []
    if len(standings) > MAX_HEATMAP_ROWS:
        more.append(f"the top {MAX_HEATMAP_ROWS} of {len(standings)} candidates")
    if len(workloads) > MAX_HEATMAP_COLUMNS:
        more.append(f"{MAX_HEATMAP_COLUMNS} of {len(workloads)} workloads")
    colour_text = (f"Colour: difference from the reference {_esc(reference)} on the same workload, blue better, "
                   "red worse." if relative else "Colour: balancedness.")
    caption = ("Rows: candidates in rank order; columns: every workload they have rows for, compared or not. "
               "Cell text: GPU balancedness (or the status of a failed evaluation, grey). " + colour_text
               + (f" Showing {' and '.join(more)}." if more else ""))
    return _figure(_png(figure), "heatmap of balancedness per candidate and workload", caption)


def _per_layer(rows: pa.Table, standings: Sequence[Standing], reference: str, workload: str | None) -> str:
    if LAYER_COLUMN not in rows.column_names:
        return "<p>The rows hold no per-layer loads (written before schema version 2).</p>"
    ref = next((s for s in standings if s.candidate_name == reference), None)
    best = next((s for s in standings if s.ok and not s.first_error and s.candidate_name != reference), None)
    if best is None or ref is None:
        missing = "the reference" if ref is None else "a fully-ok candidate other than the reference"
        return f"<p>No per-layer comparison: {missing} is missing from these rows.</p>"
    picked = rows.filter(pc.is_in(rows["candidate_hash"],
                                  value_set=pa.array([best.candidate_hash, ref.candidate_hash], type=pa.string())))
    picked = picked.filter(pc.equal(picked["status"], "ok"))
    data = picked.select(["candidate_hash", "workload_id", "workload_name", "balancedness", LAYER_COLUMN]).to_pylist()
    per = {(r["candidate_hash"], r["workload_id"]): r for r in data if r[LAYER_COLUMN]}
    shared = sorted({w for h, w in per if h == best.candidate_hash} & {w for h, w in per if h == ref.candidate_hash})
    if workload is not None:
        shared = [w for w in shared if w == workload or per[(best.candidate_hash, w)]["workload_name"] == workload]
    if not shared:
        return ("<p>No workload where both the best candidate and the reference have per-layer loads"
                + (f" matching {_esc(workload)}" if workload else "") + ".</p>")
    # The workload where the best candidate gains most over the reference: the most telling.
    chosen = max(shared, key=lambda w: (per[(best.candidate_hash, w)]["balancedness"] or 0)
                 - (per[(ref.candidate_hash, w)]["balancedness"] or 0))
    b_row, r_row = per[(best.candidate_hash, chosen)], per[(ref.candidate_hash, chosen)]
    b_layers, r_layers = np.asarray(b_row[LAYER_COLUMN]), np.asarray(r_row[LAYER_COLUMN])
    figure = _new_figure(10, 4.2)
    axes = figure.add_subplot()
    axes.plot(np.arange(len(r_layers)), r_layers, color="black", linewidth=1.3, marker="o", markersize=3,
              label=f"{_short(reference, 30)} (balancedness {r_row['balancedness']:.4f})")
    axes.plot(np.arange(len(b_layers)), b_layers, color="#d1242f", linewidth=1.3, marker="o", markersize=3,
              label=f"{_short(best.candidate_name, 30)} (balancedness {b_row['balancedness']:.4f})")
    axes.axhline(1.0, color="#1a7f37", linestyle="--", linewidth=1, label="perfect balance")
    axes.set_xlabel("MoE layer")
    axes.set_ylabel("max GPU load / mean GPU load")
    axes.grid(True, alpha=0.25)
    axes.legend(fontsize=8)
    name = b_row["workload_name"] or chosen
    axes.set_title(f"Per-layer GPU load peak on {_short(name, 50)}")
    worse = int((b_layers > r_layers + 1e-9).sum()) if len(b_layers) == len(r_layers) else 0
    runner_up = next((s for s in standings if s.ok and not s.first_error), None) is ref
    why = " (given)" if workload else ", where the best candidate gains most over the reference"
    caption = (("The reference ranks first; the runner-up is shown against it. " if runner_up else "") +
               f"Workload <code>{_esc(chosen)}</code>{why}: "
               f"for each layer, the busiest GPU's load over the mean GPU load (1.0 is perfect; the slowest GPU sets "
               f"the layer's time), mean over the window pairs of the predictive protocol. "
               f"{_esc(best.candidate_name)} peaks higher than the reference on {worse} of {len(b_layers)} layers.")
    return _figure(_png(figure), "per-layer GPU load of the best candidate against the reference", caption)


def _delta_span(delta: float) -> str:
    if not math.isfinite(delta):
        return '<span class="flat">Δ n/a</span>'
    kind = "up" if delta > 5e-5 else "down" if delta < -5e-5 else "flat"
    return f'<span class="{kind}">Δ {delta:+.4f}</span>'


def _lineage_tree(standings: Sequence[Standing]) -> str:
    """The parents and the children diffs made from them, as nested HTML lists."""
    by_hash = {s.candidate_hash: s for s in standings}
    children: dict[str, list[Standing]] = {}
    for s in standings:
        if s.parent_hash:
            children.setdefault(s.parent_hash, []).append(s)
    if not children:
        return "<p>No candidate here was made from a parent by a diff.</p>"
    roots = [h for h in children if h not in by_hash or not by_hash[h].parent_hash
             or by_hash[h].parent_hash not in by_hash]
    shown = [0]
    seen: set[str] = set()

    def node(candidate_hash: str, outside_name: str = "") -> str:
        if shown[0] >= MAX_TREE_NODES or candidate_hash in seen:
            return ""
        seen.add(candidate_hash)
        shown[0] += 1
        s = by_hash.get(candidate_hash)
        if s is None:
            label = f'<b>{_esc(outside_name or candidate_hash[:12])}</b> <span class="tag">(not in this view)</span>'
        else:
            bal = f"{s.balancedness:.4f}" if math.isfinite(s.balancedness) else s.statuses
            label = f"<b>{_esc(s.candidate_name)}</b> #{s.rank} · balancedness {bal}"
            if s.parent_hash:
                label += f" · {_delta_span(s.delta_vs_parent)} vs parent"
                if s.diff_name:
                    label += f' <span class="tag">diff {_esc(s.diff_name)}</span>'
            if s.first_error:
                label += f' <span class="down">{_esc(s.statuses)}</span>'
        kids = sorted(children.get(candidate_hash, []), key=lambda c: c.rank)
        inner = "".join(node(c.candidate_hash) for c in kids)
        return f"<li>{label}{f'<ul>{inner}</ul>' if inner else ''}</li>"

    items = []
    for root in sorted(roots, key=lambda h: by_hash[h].rank if h in by_hash else 10**9):
        outside = next((c.parent_name for c in children[root] if c.parent_name), "")
        items.append(node(root, outside))
    more = len(standings) - shown[0]
    note = f"<p class='tag'>Showing {MAX_TREE_NODES} nodes.</p>" if shown[0] >= MAX_TREE_NODES and more > 0 else ""
    return f'<ul class="tree">{"".join(items)}</ul>{note}'


# ---------------------------------------------------------------------------- page

def render_html(rows: pa.Table, standings: Sequence[Standing], *, source: str = "", filters: str = "",
                reference: str = REFERENCE, sort_by: str = "balancedness", layer_workload: str | None = None,
                compared: Comparison | None = None) -> str:
    """The report as one HTML document. `rows` are the store rows the standings were
    made from (selected, any number per candidate and workload); `standings` the ranked
    leaderboard; `compared` which workloads it compared (the leaderboard table's
    `comparison`), said above the table."""
    rows = latest(rows, PER_WORKLOAD)
    scatter, front = _scatter(standings, reference)
    candidates, workloads = len(standings), len(set(rows["workload_id"].to_pylist())) if len(rows) else 0
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"{candidates} candidates × {workloads} workloads from <code>{_esc(source)}</code>"
            f"{' · filters: ' + _esc(filters) if filters else ''} · sorted by {_esc(sort_by)} · "
            f"reference {_esc(reference)} · generated {stamp}")
    sections = [
        ("Key findings", _findings(standings, reference, front)),
        ("Leaderboard", "<p class='meta'>gpu_bal: mean GPU balancedness over ok workloads, ±95%: half-width of its "
                        "95% interval over workloads; runtime_ms: median over workloads; speedup: vs the reference "
                        "(geometric mean over workloads, timed in turns with it); score: the harness's score of "
                        "balancedness and speedup; Δbal_parent: vs the parent on shared workloads. Failed "
                        "candidates rank last, red.</p>"
                        + (f"<p class='note'>{_esc(compared.note())}</p>" if compared else "")
                        + _table(standings, reference)),
        ("Balancedness vs runtime", scatter),
        ("Candidates × workloads", _heatmap(rows, standings, reference)),
        ("Per-layer GPU load: best candidate vs reference", _per_layer(rows, standings, reference, layer_workload)),
        ("Lineage of diffs", _lineage_tree(standings)),
    ]
    body = "".join(f"<h2>{_esc(title)}</h2>{content}" for title, content in sections)
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>EPLB leaderboard</title><style>{_CSS}</style></head><body>"
            f"<h1>EPLB leaderboard</h1><p class='meta'>{meta}</p>{body}"
            f"<script>{_SCRIPT}</script></body></html>\n")
