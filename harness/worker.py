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

import gc
import importlib.util
import json
import sys
import time
from pathlib import Path

ENTRY_POINT = "rebalance_experts"
OUT_OF_MEMORY = ("can't allocate memory", "cannot allocate memory", "out of memory", "not enough memory")
MESSAGE_CHARS = 2000  # an exception message is cut here: a 100 MB message must not become a 100 MB row


def _describe(exc: BaseException) -> str:
    # Same form as harness.results.describe_exception; not imported so the candidate loads first.
    # Defensive: the exception is the candidate's, and so are its __str__ and its size.
    try:
        message = str(exc)
    except BaseException:
        message = "<the exception's message cannot be printed>"
    if len(message) > MESSAGE_CHARS:
        message = f"{message[:MESSAGE_CHARS]}... ({len(message)} characters)"
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {message}"


def _failure(exc: BaseException, stage: str) -> dict:
    text = _describe(exc)
    if isinstance(exc, MemoryError) or any(marker in text.lower() for marker in OUT_OF_MEMORY):
        return {"status": "crash", "error": f"out of memory {stage}: {text}"}
    return {"status": "error", "error": f"{stage}: {text}"}


def _import_candidate(path: Path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    return module


def _as_array(value, name: str, max_elements: int | None = None):
    """A returned tensor (any device) or array-like as a numpy array, or ValueError; one
    over `max_elements` is refused before it is written, so it cannot flood the parent."""
    import numpy as np
    import torch

    try:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
    except Exception as exc:  # a meta tensor, an object whose __array__ raises, ...
        raise ValueError(f"{name} cannot be read as an array ({_describe(exc)})") from None
    if array.dtype == object:
        raise ValueError(f"{name} is not a numeric array")
    if max_elements is not None and array.size > max_elements:
        raise ValueError(f"{name} is too large: {array.size} elements; at most {max_elements} "
                         f"(layers x experts x replicas)")
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
    # No legal array is larger than log2phy with one column per slot.
    max_elements = windows.shape[1] * windows.shape[2] * topology["num_replicas"]
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
                arrays[f"{name}_{t}"] = _as_array(value, name, max_elements)
        except Exception as exc:
            return {"status": "invalid", "error": f"window {t}: {exc}"}
        first_outputs.append(arrays[f"phy2log_{t}"])
        try:
            input_changed.append(not torch.equal(weight, windows[t]))
        except Exception:  # the candidate swapped the tensor's storage for another dtype or device
            input_changed.append(True)
    np.savez(workdir / "placements.npz", **arrays)

    timing = request["timing"]
    for _ in range(timing["warmup"]):
        try:
            entry(windows[0].clone(), *args)
        except BaseException as exc:
            return _failure(exc, "in a warm-up call on window 0")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    samples: list[float] = []
    nondeterministic = False
    # Every window is timed at least once, so a candidate cannot be fast on window 0 only.
    min_samples = max(timing["min_samples"], windows.shape[0])
    # As timeit does: collect once, then no collection of the harness's garbage lands in a sample.
    gc.collect()
    gc.disable()
    started = time.perf_counter()
    t = 0
    try:
        while len(samples) < timing["max_samples"] and (
            len(samples) < min_samples or time.perf_counter() - started < timing["min_time_s"]
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
                try:
                    again = _as_array(output[0], "phy2log")
                    nondeterministic = not np.array_equal(again, first_outputs[t])
                except (ValueError, TypeError, RuntimeError, IndexError, KeyError):
                    nondeterministic = True
            t = (t + 1) % windows.shape[0]
    finally:
        gc.enable()
    return {
        "status": "ok",
        "error": "",
        "runtime_samples_s": samples,
        "input_changed": input_changed,
        "nondeterministic": nondeterministic,
        "threads": torch.get_num_threads(),
        **_device_facts(device),
    }


def _device_facts(device: str) -> dict:
    """What the row records of the device the call ran on."""
    import torch

    if not device.startswith("cuda"):
        return {"device_name": "cpu", "cuda_version": "", "peak_device_memory_bytes": 0}
    return {
        "device_name": torch.cuda.get_device_name(device),
        "cuda_version": torch.version.cuda or "",
        "peak_device_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
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


def _die_with_parent(parent_pid: int | None) -> None:
    """Ask the kernel to SIGKILL this process when the harness dies (a harness killed
    midway must not leave a hung candidate running forever); Linux only."""
    import ctypes
    import os
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(1)


def main() -> None:
    workdir = Path(sys.argv[1])
    request = json.loads((workdir / "request.json").read_text())
    _die_with_parent(request.get("parent_pid"))
    _limit_memory(request["memory_mb"], request["device"])
    try:
        answer = run(request, workdir)
    except BaseException as exc:  # the candidate runs in this process and can break anything in it
        answer = _failure(exc, "in the worker, after the candidate ran")
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
