"""Workload files: every supported format read into `Loads`, and a file made a `Workload`.

`read_loads(path)` returns what a file holds, `Loads` (no topology); `file_workload(path)`
places those loads on a topology and returns a `Workload`. Formats:
- arrays: .npy, .npz (one array), .pt (a tensor), .parquet (a long table), each
  [windows, layers, experts] or [layers, experts];
- the ADRS `expert-load.json` and SGLang's `logical_count` JSON, streamed with ijson;
- SGLang expert-distribution dumps (.pt / .npz: `logical_count`, or per-pass `records`);
- per-token routing traces (.npz / .pt: `expert_id` with `step`);
- the OLMoE routing-output JSON of text domains (`read_domain_counts`, suites only).

Layers with no load in any window (dense layers such as DeepSeek-V3's rows 0-2) are
dropped and the drop is noted; loads must be finite and non-negative. Only numpy is needed
up front: torch, pyarrow and ijson are imported by the formats that need them.

What a file parses to is cached on disk (`harness.workloads.cache`, keyed by the file's
path, size and modification time, the window steps and `READER_VERSION`), so a trace is
parsed once however many evaluations read it; .npy files are read directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.workloads import cache
from harness.workloads.model import DEFAULT_WINDOW_STEPS, Workload, topology_for_shape
from harness.workloads.windows import (
    WindowSum,
    check_window_steps,
    partial_note,
    routing_counts,
    steps_to_windows,
    too_few_steps,
)

__all__ = ["READER_VERSION", "Loads", "file_workload", "read_domain_counts", "read_loads"]

# Bump when what a file parses to changes: cached parses of older versions are then unused.
READER_VERSION = 1


@dataclass(frozen=True)
class Loads:
    """What a file held, before a topology is attached.

    weights: [windows, layers, experts] float64; format: what the file was ("adrs-json",
    "routing-trace", "npy", ...); notes: what reading it changed or assumed.
    """

    weights: np.ndarray
    format: str
    notes: tuple[str, ...] = ()
    partial_last: bool = False  # the last window summed fewer steps than the others


def _as_2d(value: Any, path: Path, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: {what} is not a numeric [layers, experts] array ({exc})") from None
    if array.ndim != 2:
        raise HarnessError(f"{path}: {what} has shape {list(array.shape)}; expected [layers, experts]")
    return array


def _json_error(path: Path, exc: Exception) -> HarnessError:
    """One line for what ijson (yajl) reports: its first line, without the pointer drawing."""
    message = exc.args[0] if exc.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    reason = str(message).strip().split("\n")[0] or type(exc).__name__
    if "premature EOF" in reason:
        reason = "the file ends inside a value (truncated?)"
    return HarnessError(f"{path} is not valid JSON: {reason}")


def _read_json(path: Path, window_steps: int) -> Loads:
    """The ADRS `expert-load.json` (`load_history[].logical_expert_load`, one [layers, experts]
    load per step) or SGLang's JSON (`logical_count`, [layers, experts] or [steps, layers,
    experts]), streamed with ijson so a 234 MB file never sits in memory as Python lists:
    one step at a time is decoded and added to its window."""
    import ijson  # only JSON traces need it

    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    key = None
    for candidate in ("load_history", "logical_count"):
        at = head.find(f'"{candidate}"'.encode())
        if at >= 0 and (key is None or at < head.find(f'"{key}"'.encode())):
            key = candidate
    if key is None:
        if not head.strip():
            raise HarnessError(f"{path} is empty")
        raise HarnessError(f"{path} has neither 'load_history' (ADRS expert-load.json) nor 'logical_count' "
                           "(SGLang expert distribution) near its start")
    sums = WindowSum(path, window_steps)
    rows: list[Any] = []
    try:
        with open(path, "rb") as handle:
            for index, item in enumerate(ijson.items(handle, f"{key}.item", use_float=True)):
                if key == "load_history":
                    load = item.get("logical_expert_load") if isinstance(item, dict) else item
                    if load is None:
                        raise HarnessError(f"{path}: load_history step {index} has no 'logical_expert_load'")
                    sums.add(_as_2d(load, path, f"load_history step {index}"))
                elif isinstance(item, list) and item and isinstance(item[0], list):
                    sums.add(_as_2d(item, path, f"logical_count step {index}"))
                else:
                    rows.append(item)
    except ijson.JSONError as exc:
        raise _json_error(path, exc) from None
    if key == "load_history":
        weights, notes = sums.result()
        return Loads(weights, "adrs-json", notes, sums.steps % window_steps > 0)
    if rows and sums.steps:
        raise HarnessError(f"{path}: logical_count mixes [layers, experts] rows and steps")
    if rows:
        return Loads(_as_2d(rows, path, "logical_count")[None], "sglang-json")
    weights, notes = sums.result()
    return Loads(weights, "sglang-json", notes, sums.steps % window_steps > 0)


def _physical_records_to_logical(records: list[Any], phy2log: Any, path: Path, window_steps: int
                                 ) -> tuple[np.ndarray, tuple[str, ...], bool]:
    """SGLang `per_pass` dumps: records of global_physical_count [layers, physical] per
    forward pass, mapped to logical experts with last_physical_to_logical_map."""
    mapping = np.asarray(phy2log, dtype=np.int64)
    if mapping.ndim != 2 or not records:
        raise HarnessError(f"{path}: an SGLang per-pass dump needs records and a [layers, physical] map")
    try:
        passes = np.array([int(r["forward_pass_id"]) for r in records])
        counts = np.stack([np.asarray(r["global_physical_count"], dtype=np.float64) for r in records])
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: SGLang per-pass records are malformed ({exc})") from None
    layers, physical = mapping.shape
    if counts.shape[1:] != (layers, physical):
        raise HarnessError(f"{path}: records have shape {list(counts.shape[1:])} but the map is {[layers, physical]}")
    experts = int(mapping.max()) + 1
    order, step = np.unique(passes, return_inverse=True)
    flat = (step[:, None, None] * layers + np.arange(layers)[None, :, None]) * experts + mapping[None]
    logical = np.bincount(flat.ravel(), weights=counts.ravel(), minlength=order.size * layers * experts)
    weights, notes = steps_to_windows(logical.reshape(order.size, layers, experts), window_steps, path)
    note = "physical counts mapped to logical experts with the dump's last physical-to-logical map"
    return weights, notes + (note,), order.size % window_steps > 0


def _from_mapping(data: Any, path: Path, window_steps: int, source: str) -> Loads:
    """Interpret a dict-like (npz archive, torch dump) by its keys."""
    keys = sorted(data.keys())
    if "expert_id" in keys:
        step = data["step"] if "step" in keys else None
        num_experts = int(np.asarray(data["num_experts"])) if "num_experts" in keys else None
        step = None if step is None else _numpy(step)
        weights, notes = routing_counts(_numpy(data["expert_id"]), step, num_experts, window_steps, path)
        span = len(data["expert_id"]) if step is None else int(step.max()) - int(step.min()) + 1
        if "moe_layer_ids" in keys:
            ids = _numpy(data["moe_layer_ids"]).tolist()
            notes += (f"MoE layers are model layers {_ranges(ids)}",)
        return Loads(weights, "routing-trace", notes, span % window_steps > 0)
    if "logical_count" in keys:
        array = _numpy(data["logical_count"]).astype(np.float64)
        if array.ndim == 2:
            return Loads(array[None], f"sglang-{source}")
        if array.ndim == 3:
            weights, notes = steps_to_windows(array, window_steps, path)
            return Loads(weights, f"sglang-{source}", notes, array.shape[0] % window_steps > 0)
        raise HarnessError(f"{path}: logical_count has shape {list(array.shape)}; expected "
                           "[layers, experts] or [steps, layers, experts]")
    if "records" in keys and "last_physical_to_logical_map" in keys:
        weights, notes, partial = _physical_records_to_logical(
            data["records"], _numpy(data["last_physical_to_logical_map"]), path, window_steps)
        return Loads(weights, f"sglang-per-pass-{source}", notes, partial)
    arrays = [k for k in keys if hasattr(data[k], "shape") and getattr(data[k], "ndim", 0) >= 2]
    if len(arrays) == 1:
        return Loads(_windows_array(_numpy(data[arrays[0]]), path), source)
    raise HarnessError(f"{path} holds {', '.join(keys) or 'nothing'}; expected one load array, "
                       "'logical_count' (SGLang) or 'expert_id' (a routing trace)")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if value.dtype.is_floating_point:
            value = value.double()
        return value.numpy()
    return np.asarray(value)


def _windows_array(array: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise HarnessError(f"{path} holds {array.dtype} data; expected numbers")
    array = array.astype(np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise HarnessError(
            f"{path} has shape {list(array.shape)}; expected [windows, layers, experts] or [layers, experts]"
        )
    return array


def _read_parquet(path: Path, window_steps: int) -> Loads:
    """A long table: integer columns `layer` and `expert` (or `expert_id`), a load column
    `load` / `count` / `logical_count` (absent: each row is one routing decision), and
    optionally `window` (used as given) or `step` (summed into windows of window_steps)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = set(table.column_names)
    expert_col = "expert" if "expert" in names else "expert_id" if "expert_id" in names else None
    if "layer" not in names or expert_col is None:
        raise HarnessError(f"{path} has columns {sorted(names)}; a load table needs 'layer' and 'expert' "
                           "(or 'expert_id'), with 'load' or 'count', and optionally 'window' or 'step'")

    def column(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    layer = column("layer").astype(np.int64)
    expert = column(expert_col).astype(np.int64)
    load_col = next((c for c in ("load", "count", "logical_count") if c in names), None)
    load = column(load_col).astype(np.float64) if load_col else np.ones(layer.size)
    if layer.size == 0:
        raise HarnessError(f"{path} has no rows")
    if layer.min() < 0 or expert.min() < 0:
        raise HarnessError(f"{path} has negative layer or expert ids")
    notes: tuple[str, ...] = ()
    partial = False
    if "window" in names:
        window = column("window").astype(np.int64)
        window = window - window.min()
    elif "step" in names:
        step = column("step").astype(np.int64)
        span = int(step.max() - step.min()) + 1
        if window_steps > span:
            raise too_few_steps(path, span, window_steps)
        window = (step - step.min()) // window_steps
        notes = partial_note(span, window_steps)
        partial = span % window_steps > 0
    else:
        window = np.zeros(layer.size, dtype=np.int64)
    shape = (int(window.max()) + 1, int(layer.max()) + 1, int(expert.max()) + 1)
    flat = (window * shape[1] + layer) * shape[2] + expert
    weights = np.bincount(flat, weights=load, minlength=int(np.prod(shape))).reshape(shape)
    return Loads(weights, "parquet", notes, partial)


def _read_torch(path: Path, window_steps: int) -> Loads:
    import torch  # only .pt files need torch in the parent

    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, torch.Tensor):
        return Loads(_windows_array(_numpy(data), path), "pt")
    if isinstance(data, dict):
        return _from_mapping(data, path, window_steps, "pt")
    raise HarnessError(f"{path} holds a {type(data).__name__}; expected a tensor or an SGLang dump dict")


def read_loads(path: Path | str, window_steps: int = DEFAULT_WINDOW_STEPS) -> Loads:
    """Read the loads in a workload file of any supported format, dense layers dropped.

    .npy / .npz (one array) / .pt (a tensor) / .parquet: [windows, layers, experts] or
    [layers, experts] (see _read_parquet for the table form); .json: ADRS expert-load.json
    or SGLang `logical_count`; .pt / .npz dicts: SGLang dumps (`logical_count`, or per-pass
    `records`) and routing traces (`expert_id` [tokens, layers(, top_k)] with `step`).
    """
    path = Path(path)
    window_steps = check_window_steps(window_steps)
    if not path.is_file():
        raise HarnessError(f"workload file {path} does not exist")
    if path.suffix.lower() == ".npy":  # already the array: a cached copy would save nothing
        return _parse(path, window_steps)
    source = cache.stamp(path, window_steps, READER_VERSION)
    cached = _from_arrays(cache.load(source))
    if cached is not None:
        return cached
    loads = _parse(path, window_steps)
    cache.store(source, {"weights": loads.weights, "format": np.array(loads.format),
                         "notes": np.array(loads.notes, dtype=str), "partial_last": np.array(loads.partial_last)})
    return loads


def _from_arrays(arrays: dict[str, np.ndarray] | None) -> Loads | None:
    """The `Loads` a cache entry holds; None for a miss or an entry of another layout."""
    try:
        return Loads(arrays["weights"], str(arrays["format"]), tuple(map(str, arrays["notes"])),
                     bool(arrays["partial_last"]))
    except (KeyError, TypeError, ValueError):
        return None


def _parse(path: Path, window_steps: int) -> Loads:
    """`read_loads` without the cache."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            loads = _read_json(path, window_steps)
        elif suffix == ".npy":
            loads = Loads(_windows_array(np.load(path, allow_pickle=False), path), "npy")
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                loads = _from_mapping(archive, path, window_steps, "npz")
        elif suffix == ".pt":
            loads = _read_torch(path, window_steps)
        elif suffix in (".parquet", ".pq"):
            loads = _read_parquet(path, window_steps)
        else:
            raise HarnessError(f"workload file {path} has unknown suffix {path.suffix!r}; "
                               "use .npy, .npz, .pt, .parquet or .json")
    except HarnessError:
        raise
    except Exception as exc:  # a corrupt file reaches us as whatever numpy, torch or pyarrow raises
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HarnessError(f"workload file {path} cannot be read: {reason}") from exc
    return _clean(loads, path)


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def _clean(loads: Loads, path: Path) -> Loads:
    weights = loads.weights
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise HarnessError(f"workload file {path} has negative or non-finite loads")
    dense = ~weights.any(axis=(0, 2))
    if dense.all():
        raise HarnessError(f"workload file {path} has no load in any layer")
    notes = loads.notes
    if dense.any():
        rows = np.flatnonzero(dense).tolist()
        notes = (f"dropped {len(rows)} dense (all-zero) layer{'s' if len(rows) > 1 else ''}: "
                 f"rows {_ranges(rows)}",) + notes
        weights = weights[:, ~dense]
    return Loads(np.ascontiguousarray(weights, dtype=np.float64), loads.format, notes, loads.partial_last)



def file_workload(path: Path | str, overrides: dict[str, int | None] | None = None, *,
                  window_steps: int = DEFAULT_WINDOW_STEPS, preset: str | None = None) -> Workload:
    """The workload of a file of any supported format (see read_loads), named after the
    file. Its topology is `preset`'s (the file's layer and expert counts must agree with
    it), else the preset whose shape the file has, else all four topology fields of
    `overrides`; fields given in `overrides` replace the chosen topology's."""
    path = Path(path)
    loads = read_loads(path, window_steps)
    topology = topology_for_shape(path, loads.weights.shape[1:], overrides, preset)
    return Workload(name=path.stem, kind="file", weights=loads.weights, topology=topology,
                    description=f"{loads.format} file {path}", notes=loads.notes)


def read_domain_counts(path: Path | str, model: str, counts: str = "expert_counts") -> Loads:
    """The OLMoE routing-output JSON of the shared traces: `data[model][counts][domain]` =
    [layers, experts] token counts per text domain; domains (sorted) become windows."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        table = data["data"][model][counts]
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} cannot be read as JSON: {exc}") from exc
    except (KeyError, TypeError):
        raise HarnessError(f"{path} has no data[{model!r}][{counts!r}]") from None
    domains = sorted(table)
    weights = np.stack([_as_2d(table[d], path, f"domain {d}") for d in domains])
    note = f"windows are text domains {', '.join(domains)} (model layers {data.get('layers', '?')})"
    return _clean(Loads(weights, "domain-counts", (note,)), path)
