"""What the CLI's `workloads` command prints and writes: suite listings, one workload's
summary (shape, skew, drift, hash) and its loads exported as .npy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.files import write_atomically
from harness.workloads.model import Workload
from harness.workloads.suites import entry_name, suite_names, suite_spec

__all__ = [
    "export_workload",
    "format_workload_list",
    "format_workload_summary",
    "layer_skew",
    "list_workloads",
    "summarize_workload",
]


def list_workloads(suite: str | None = None) -> list[dict[str, Any]]:
    """One row per suite entry (nothing is generated or read): suite, name, source,
    shape (model preset or trace), windows (declared; '?' for files) and topology."""
    rows = []
    for each in [suite] if suite else suite_names():
        spec = suite_spec(each)
        for entry in spec["workloads"]:
            if "family" in entry:
                params = entry.get("params", {})
                source = f"{entry['family']}(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
                windows: Any = entry["num_windows"]
            else:
                paths = entry.get("trace", entry.get("file"))
                paths = paths if isinstance(paths, list) else [paths]
                source = ("trace " if "trace" in entry else "file ") + (
                    paths[0] if len(paths) == 1 else f"{paths[0]} +{len(paths) - 1} more")
                windows = "?"
            rows.append({"suite": spec["name"], "version": spec.get("version"), "name": entry_name(entry),
                         "source": source, "preset": entry.get("preset", "-"), "windows": windows})
    return rows


def format_workload_list(rows: list[dict[str, Any]], names_only: bool = False) -> str:
    """A table of list_workloads rows, or one unique name a line with names_only."""
    if names_only:
        return "\n".join(dict.fromkeys(r["name"] for r in rows))
    header = ("suite", "name", "preset", "windows", "source")
    table = [header] + [(f"{r['suite']}@v{r['version']}", r["name"], r["preset"], str(r["windows"]), r["source"])
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
                     for row in table)


def layer_skew(workload: Workload) -> np.ndarray:
    """max/mean expert load per (window, layer): 1.0 is perfectly even."""
    weights = workload.weights
    mean = weights.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, weights.max(axis=-1) / np.where(mean > 0, mean, 1), 1.0)


def summarize_workload(workload: Workload) -> dict[str, Any]:
    """What a workload is, as plain data: name, id (hash), kind, shape, topology, its skew
    (max/mean per layer, averaged over windows) and how much it changes between windows."""
    skew = layer_skew(workload).mean(axis=0)
    weights = workload.weights
    shares = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-300)
    change = (0.5 * np.abs(np.diff(shares, axis=0)).sum(axis=-1).mean()) if workload.num_windows > 1 else 0.0
    return {
        "name": workload.name,
        "id": workload.id,
        "kind": workload.kind,
        "description": workload.description,
        "notes": list(workload.notes),
        "shape": {"windows": workload.num_windows, "layers": workload.num_layers,
                  "experts": workload.num_logical_experts},
        "topology": vars(workload.topology).copy(),
        "load_per_window": float(weights.sum(axis=(1, 2)).mean()),
        "skew_per_layer": [round(float(s), 3) for s in skew],
        "skew": {"min": float(skew.min()), "median": float(np.median(skew)), "max": float(skew.max())},
        "window_change": float(change),
    }


def format_workload_summary(workload: Workload) -> str:
    """`eplb-harness workloads show`: summarize_workload as text."""
    s = summarize_workload(workload)
    shape, skew = s["shape"], s["skew"]
    lines = [
        f"{s['name']}  ({s['id']})",
        f"  kind         {s['kind']}: {s['description']}",
        f"  shape        {shape['windows']} window{'s' if shape['windows'] > 1 else ''} x {shape['layers']} layers x "
        f"{shape['experts']} experts",
        f"  topology     {workload.topology.describe()}",
        f"  load         {s['load_per_window']:.4g} per window",
        f"  skew         max/mean per layer: min {skew['min']:.2f}, median {skew['median']:.2f}, "
        f"max {skew['max']:.2f}",
        f"  drift        {s['window_change']:.3f} of the load changes expert between consecutive windows "
        "(mean total-variation distance)" if shape["windows"] > 1
        else "  drift        - (a single window, scored on itself)",
    ]
    lines += [f"  note         {note}" for note in s["notes"]]
    per_layer = " ".join(f"{v:.1f}" for v in s["skew_per_layer"])
    lines.append(f"  layer skew   {per_layer}")
    return "\n".join(lines)


def export_workload(workload: Workload, path: Path | str) -> Path:
    """Write the [windows, layers, experts] loads as .npy (atomically); the path written."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise HarnessError(f"export writes .npy files; {path} has suffix {path.suffix!r}")
    if not path.parent.is_dir():
        raise HarnessError(f"cannot write {path}: folder {path.parent} does not exist")
    return write_atomically(path, lambda handle: np.save(handle, np.asarray(workload.weights), allow_pickle=False))
