"""Suites: named, versioned lists of workloads under `workloads/suites/`, and the entry points.

`resolve_workloads(suite, names_or_files, overrides)` gives the workloads a command scores
(the CLI's `--suite` / `--workload` / topology options); `get_workload(name_or_file)` one
workload; `suite_workloads(suite)` all of a suite's.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.workloads.model import (
    DEFAULT_WINDOW_STEPS,
    TRACES_ENV,
    WORKLOADS_DIR,
    Topology,
    Workload,
    topology_for_shape,
    traces_dir,
)
from harness.workloads.readers import Loads, file_workload, read_domain_counts, read_loads
from harness.workloads.synthetic import synthetic_workload
from harness.workloads.windows import check_window_steps

__all__ = ["entry_name", "get_workload", "resolve_workloads", "suite_names", "suite_spec", "suite_workloads"]

_SUITES_DIR = WORKLOADS_DIR / "suites"
# Order in which suites are searched for a workload name; other suites follow by name.
_SUITE_ORDER = ("default", "quick", "adrs", "full", "real")


def resolve_workloads(suite: str | None, names_or_files: list[str], overrides: dict[str, int | None],
                      window_steps: int = DEFAULT_WINDOW_STEPS) -> list[Workload]:
    """The workloads a command scores: each `--workload` (a suite workload's name or a
    file), else the suite's; topology fields in `overrides` replace a workload's own.

    A file carries no topology: it takes the preset whose shape it has, else every
    topology field must be given. `window_steps` sums trace steps into windows (files only;
    suite traces carry their own).
    """
    check_window_steps(window_steps)
    if not names_or_files:
        return [_with_topology(w, overrides) for w in suite_workloads(suite or "default")]
    return [get_workload(arg, suite, overrides, window_steps) for arg in names_or_files]


def get_workload(name_or_file: str, suite: str | None = None, overrides: dict[str, int | None] | None = None,
                 window_steps: int = DEFAULT_WINDOW_STEPS) -> Workload:
    """One workload: a file path (any supported format) or the name of a suite workload;
    topology fields in `overrides` replace its own."""
    overrides = overrides or {}
    if _looks_like_file(name_or_file):
        return file_workload(name_or_file, overrides, window_steps=window_steps)
    spec, entry = _find_entry(name_or_file, suite)
    return _with_topology(_entry_workload(entry, spec["path"], spec["name"]), overrides)


def suite_workloads(name_or_path: str) -> list[Workload]:
    """The workloads of a suite: a name under workloads/suites/ or a JSON spec file."""
    spec = suite_spec(name_or_path)
    return [_entry_workload(entry, spec["path"], spec["name"]) for entry in spec["workloads"]]


def suite_names() -> list[str]:
    """The suites under workloads/suites/, in search order."""
    found = sorted(p.stem for p in _SUITES_DIR.glob("*.json"))
    return [n for n in _SUITE_ORDER if n in found] + [n for n in found if n not in _SUITE_ORDER]


def suite_spec(name_or_path: str) -> dict[str, Any]:
    """The parsed spec of a suite (a name under workloads/suites/ or a JSON file):
    `{"name", "version", "description", "workloads": [entry, ...]}` where an entry is
    - `{"family", "preset", "seed", "num_windows", "params"?, "name"?, "topology"?}`
    - `{"trace": path | [paths], "preset"? | "topology"?, "window_steps"?, "partial_window"?,
      "format"?, "name"?}`, paths relative to the shared traces folder ($EPLB_TRACES_DIR);
      several paths are read in order and their windows concatenated; `"partial_window":
      "drop"` leaves out a shorter last window (default "keep", as ADRS does);
      `"format": "domain-counts"` with `"model"` and `"counts"` reads the OLMoE
      routing-output JSON;
    - `{"file": path, "preset"? | "topology"?, "window_steps"?, "name"?}`, path relative
      to the spec file.
    """
    path = _suite_path(name_or_path)
    spec = dict(_read_spec(path.resolve(), path.stat().st_mtime))
    spec.setdefault("name", path.stem)
    spec["path"] = str(path)
    return spec


def entry_name(entry: dict[str, Any]) -> str:
    """The name a suite entry's workload gets."""
    if "name" in entry:
        return str(entry["name"])
    if "family" in entry:
        return f"{entry['family']}-{entry['preset']}-s{entry['seed']}"
    source = entry.get("trace", entry.get("file"))
    first = source[0] if isinstance(source, list) else source
    return Path(str(first)).stem


def _looks_like_file(arg: str) -> bool:
    return Path(arg).is_file() or bool(Path(arg).suffix) or "/" in arg or os.sep in arg


def _find_entry(name: str, suite: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, entry) of the workload called `name`: in `suite` first when given, then in
    the first suite (search order) that has it."""
    suites = ([suite] if suite else []) + [n for n in suite_names() if n != suite]
    for each in suites:
        spec = suite_spec(each)
        for entry in spec["workloads"]:
            if entry_name(entry) == name:
                return spec, entry
    raise HarnessError(f"unknown workload {name!r}: not a file path and not a workload of any suite "
                       "(eplb-harness workloads list shows them)")


def _with_topology(workload: Workload, overrides: dict[str, int | None]) -> Workload:
    """The same loads on a topology with some fields overridden (None fields kept)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return workload
    return Workload(workload.name, workload.kind, workload.weights,
                    replace(workload.topology, **given), workload.description, workload.notes)


def _suite_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix.lower() == ".json" or path.is_file():
        if not path.is_file():
            raise HarnessError(f"suite file {path} does not exist")
        return path
    candidate = _SUITES_DIR / f"{name_or_path}.json"
    if "/" in name_or_path or not candidate.is_file():
        raise HarnessError(f"unknown suite {name_or_path!r}; known suites: {', '.join(suite_names())}")
    return candidate


@functools.lru_cache(maxsize=64)
def _read_spec(path: Path, mtime: float) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"suite file {path} cannot be read: {' '.join(str(exc).split())}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("workloads"), list) or not spec["workloads"]:
        raise HarnessError(f"suite file {path} lists no workloads (expected {{\"workloads\": [...]}})")
    for index, entry in enumerate(spec["workloads"]):
        if not isinstance(entry, dict) or sum(k in entry for k in ("family", "trace", "file")) != 1:
            raise HarnessError(f"suite file {path}: workload {index} needs exactly one of 'family', 'trace', 'file'")
    return spec


def _entry_topology(entry: dict[str, Any]) -> Topology | None:
    if "topology" not in entry:
        return None
    try:
        return Topology(**entry["topology"])
    except TypeError as exc:
        raise HarnessError(f"suite workload {entry_name(entry)!r} has a bad topology: {exc}") from None


def _entry_workload(entry: dict[str, Any], spec_path: Path | str, suite: str = "") -> Workload:
    """The workload a suite entry describes (see suite_spec)."""
    name = entry_name(entry)
    topology = _entry_topology(entry)
    if "family" in entry:
        missing = [k for k in ("preset", "seed", "num_windows") if k not in entry]
        if missing:
            raise HarnessError(f"suite workload {name!r} lacks {', '.join(missing)}")
        return synthetic_workload(entry["family"], entry["preset"], entry["seed"], entry["num_windows"], name,
                                  topology, **entry.get("params", {}))
    window_steps = entry.get("window_steps", DEFAULT_WINDOW_STEPS)
    if "file" in entry:
        path = (Path(spec_path).parent / entry["file"]).resolve()
        paths, kind = [path], "file"
    else:
        root = traces_dir()
        if not root.is_dir():
            raise HarnessError(
                f"suite {suite or spec_path!r} needs the shared traces folder {root}, which does not exist; "
                f"set {TRACES_ENV} to the folder holding the real traces"
            )
        sources = entry["trace"] if isinstance(entry["trace"], list) else [entry["trace"]]
        paths, kind = [root / s for s in sources], "trace"
    parts = []
    for path in paths:
        if entry.get("format") == "domain-counts":
            parts.append(read_domain_counts(path, entry["model"], entry.get("counts", "expert_counts")))
        else:
            parts.append(read_loads(path, window_steps))
        if entry.get("partial_window", "keep") == "drop" and parts[-1].partial_last and len(parts[-1].weights) > 1:
            last = parts[-1]
            parts[-1] = Loads(last.weights[:-1], last.format, last.notes + ("the shorter last window is left out",))
        elif entry.get("partial_window", "keep") not in ("keep", "drop"):
            raise HarnessError(f"suite workload {name!r}: partial_window must be 'keep' or 'drop'")
    shapes = {p.weights.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise HarnessError(f"suite workload {name!r}: its files have different shapes {sorted(shapes)}")
    weights = np.concatenate([p.weights for p in parts])
    notes = tuple(dict.fromkeys(n for p in parts for n in p.notes))
    if len(parts) > 1:
        notes += (f"windows are the files {', '.join(Path(p).stem for p in paths)}, in this order",)
    if topology is not None:
        if "preset" in entry:
            topology_for_shape(paths[0], weights.shape[1:], None, entry["preset"])
    else:
        topology = topology_for_shape(paths[0], weights.shape[1:], None, entry.get("preset"))
    described = ", ".join(str(Path(p).relative_to(traces_dir())) if kind == "trace" else str(p) for p in paths)
    return Workload(name=name, kind=kind, weights=weights, topology=topology,
                    description=entry.get("description", f"{parts[0].format}: {described}"), notes=notes)
