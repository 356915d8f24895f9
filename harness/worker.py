"""The worker: runs one candidate in a process of its own (`python -m harness.worker DIR`).

It reads `DIR/request.json` and `DIR/weights.npy`, imports the candidate before anything
heavy, calls `rebalance_experts` once per window for the placements, then times further
calls, and writes back exactly one answer as plain data: `DIR/placements.npz` (arrays,
no pickle) and `DIR/answer.json`. The parent trusts none of it: it re-checks every
placement and recomputes every figure.

Only stdlib is imported at module level, so the candidate's import runs first and an
import-time hang or crash is the candidate's own.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

ENTRY_POINT = "rebalance_experts"
OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "not enough memory")


def _describe(exc: BaseException) -> str:
    # Same form as harness.results.describe_exception; not imported so the candidate loads first.
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


def _failure(exc: BaseException, stage: str) -> dict:
    text = _describe(exc)
    if isinstance(exc, MemoryError) or any(marker in str(exc).lower() for marker in OUT_OF_MEMORY):
        return {"status": "crash", "error": f"out of memory {stage}: {text}"}
    return {"status": "error", "error": f"{stage}: {text}"}


def _import_candidate(path: Path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    return module


def _as_array(value, name: str):
    """A returned tensor (any device) or array-like as a numpy array, or ValueError."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise ValueError(f"{name} is not a numeric array")
    return array


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def run(request: dict, workdir: Path) -> dict:
    """Run the request; return the answer (without raising for candidate failures)."""
    try:
        module = _import_candidate(workdir / "candidate.py")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt at import are the candidate's too
        return _failure(exc, "at import")
    entry = getattr(module, ENTRY_POINT, None)
    if not callable(entry):
        return {"status": "error", "error": f"entry point missing: the program defines no callable {ENTRY_POINT}()"}

    import numpy as np
    import torch

    torch.set_num_threads(request["threads"])
    device = request["device"]
    topology = request["topology"]
    args = (topology["num_replicas"], topology["num_groups"], topology["num_nodes"], topology["num_gpus"])
    windows = torch.from_numpy(np.load(workdir / "weights.npy", allow_pickle=False)).to(device=device, dtype=torch.float32)

    arrays: dict[str, object] = {}
    first_outputs = []
    input_changed = []
    for t in range(windows.shape[0]):
        weight = windows[t].clone()
        try:
            output = entry(weight, *args)
        except BaseException as exc:
            return _failure(exc, f"in the call on window {t}")
        if not isinstance(output, (tuple, list)) or len(output) != 3:
            kind = f"{len(output)} values" if isinstance(output, (tuple, list)) else type(output).__name__
            return {"status": "invalid", "error": f"returned {kind}; the contract is (phy2log, log2phy, logcnt)"}
        try:
            for name, value in zip(("phy2log", "log2phy", "logcnt"), output):
                arrays[f"{name}_{t}"] = _as_array(value, name)
        except (ValueError, TypeError, RuntimeError) as exc:
            return {"status": "invalid", "error": f"window {t}: {exc}"}
        first_outputs.append(arrays[f"phy2log_{t}"])
        input_changed.append(not torch.equal(weight, windows[t]))
    np.savez(workdir / "placements.npz", **arrays)

    timing = request["timing"]
    samples: list[float] = []
    nondeterministic = False
    started = time.perf_counter()
    t = 0
    while len(samples) < timing["max_samples"] and (
        len(samples) < timing["min_samples"] or time.perf_counter() - started < timing["min_time_s"]
    ):
        weight = windows[t].clone()
        _synchronize(device)
        begin = time.perf_counter()
        try:
            output = entry(weight, *args)
            _synchronize(device)
        except BaseException as exc:
            return _failure(exc, f"in a timed call on window {t}")
        samples.append(time.perf_counter() - begin)
        if not nondeterministic:
            again = _as_array(output[0], "phy2log")
            nondeterministic = again.shape != first_outputs[t].shape or not np.array_equal(again, first_outputs[t])
        t = (t + 1) % windows.shape[0]
    return {
        "status": "ok",
        "error": "",
        "runtime_samples_s": samples,
        "input_changed": input_changed,
        "nondeterministic": nondeterministic,
        "threads": torch.get_num_threads(),
    }


def _limit_memory(memory_mb: int, device: str) -> None:
    """Cap this process's memory before the candidate runs (set here, not through the
    parent's preexec_fn, which is unsafe in the parent's threads)."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # CUDA reserves far more address space than it uses, so RLIMIT_AS would break it.
    if not device.startswith("cuda"):
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    workdir = Path(sys.argv[1])
    request = json.loads((workdir / "request.json").read_text())
    _limit_memory(request["memory_mb"], request["device"])
    answer = run(request, workdir)
    # Written last and renamed into place: the parent reads an answer only if it is whole.
    partial = workdir / "answer.json.partial"
    partial.write_text(json.dumps(answer))
    partial.replace(workdir / "answer.json")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: a candidate's leftover threads or atexit hooks must not
    # turn a finished evaluation into a hang.
    import os

    os._exit(0)


if __name__ == "__main__":
    main()
