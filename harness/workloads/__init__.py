"""Workloads: the expert loads a candidate plans for and is scored on.

A `Workload` is a time series of load windows `weights: [windows, layers, experts]` and the
expert-parallel `Topology` to place them on; its `id` is a content hash. Which function to call:

- the workloads for a command's arguments (`--suite`, `--workload NAME|FILE`, the topology
  options): `resolve_workloads(suite, names_or_files, overrides)`;
- one workload by suite name or file path: `get_workload(name_or_file)`;
- all of a suite's: `suite_workloads(suite)`; a seeded synthetic one:
  `synthetic_workload(family, preset, seed, num_windows)`; a file's: `file_workload(path)`.

Functions named `*workload*` return `Workload`s (loads placed on a topology); `read_*`
return `Loads`, what a file holds before a topology is attached.

Modules, one concept each: `model` (the records, model presets, where data lives),
`synthetic` (the families), `windows` (steps summed into windows), `readers` (file
formats), `cache` (parsed trace files kept on disk), `suites` (suite specs and the entry
points above), `summary` (what the CLI's `workloads` command prints). Everything is
numpy (torch only to read .pt files).
"""

from harness.workloads.model import DEFAULT_WINDOW_STEPS, PRESETS, TRACES_ENV, Preset, Topology, Workload, traces_dir
from harness.workloads.readers import Loads, file_workload, read_loads
from harness.workloads.suites import get_workload, resolve_workloads, suite_names, suite_workloads
from harness.workloads.summary import (
    export_workload,
    format_workload_list,
    format_workload_summary,
    list_workloads,
    summarize_workload,
)
from harness.workloads.synthetic import FAMILIES, synthetic_workload
from harness.workloads.windows import routing_counts

__all__ = [
    "DEFAULT_WINDOW_STEPS",
    "FAMILIES",
    "PRESETS",
    "TRACES_ENV",
    "Loads",
    "Preset",
    "Topology",
    "Workload",
    "export_workload",
    "file_workload",
    "format_workload_list",
    "format_workload_summary",
    "get_workload",
    "list_workloads",
    "read_loads",
    "resolve_workloads",
    "routing_counts",
    "suite_names",
    "suite_workloads",
    "summarize_workload",
    "synthetic_workload",
    "traces_dir",
]
