"""The worker: runs one candidate in a process of its own, a child of the warm zygote
(`harness.zygote`) that calls `serve(DIR)` once the child is isolated.

It reads the request and the weights from DIR, imports the candidate before anything
heavy, calls `rebalance_experts` once per window for the placements, then times further
calls, and writes back exactly one answer as plain data: the placements (arrays, no
pickle) and the answer. The files and their fields are `harness.protocol`'s. The parent
trusts none of it: it re-checks every placement and recomputes every figure.

Only stdlib (and the harness's stdlib-only modules) is imported at module level; numpy
and torch are already in the zygote, so importing them here costs nothing, and an
import-time hang or crash of the candidate is its own.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from harness import protocol
from harness.files import write_atomically


def _describe(exc: BaseException) -> str:
    # Same form as harness.results.describe_exception; not imported so the candidate loads first.
    # Defensive: the exception is the candidate's, and so are its __str__ and its size.
    try:
        message = str(exc)
    except BaseException:
        message = "<the exception's message cannot be printed>"
    message = protocol.shorten(message, protocol.EXCEPTION_MESSAGE_CHARS)
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {message}"


def _failure(exc: BaseException, stage: str) -> protocol.Answer:
    text = _describe(exc)
    if isinstance(exc, MemoryError) or protocol.mentions_out_of_memory(text):
        return protocol.Answer(status="crash", error=f"out of memory {stage}: {text}")
    return protocol.Answer(status="error", error=f"{stage}: {text}")


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


def _narrowed(array):
    """An integer array in the narrowest of int16 and int32 that holds its values (ids are
    small; a 58 x 256 x 33 log2phy is 4 MB as int64), else as it is: how the placements
    travel to the parent, which checks them whatever their dtype."""
    import numpy as np

    if array.dtype.kind not in "iu" or array.size == 0:
        return array
    low, high = array.min(), array.max()
    for narrow in (np.int16, np.int32):
        bounds = np.iinfo(narrow)
        if bounds.min <= low and high <= bounds.max:
            return array.astype(narrow, copy=False)
    return array


@dataclass
class _Pass:
    """What the placement pass learnt: each call's duration with its input's copy (what a
    turn's call costs), and, where the placements are kept, per window whether the call
    wrote into its input and the phy2log it returned."""

    call_s: list[float] = field(default_factory=list)
    input_changed: list[bool] = field(default_factory=list)
    first_outputs: list[object] = field(default_factory=list)


def _placement_pass(entry, windows, args: tuple[int, ...], num_replicas: int, workdir: Path,
                    keep: bool) -> _Pass | protocol.Answer:
    """One untimed call per window of `windows: [windows, layers, experts]`; with `keep`,
    what they return is checked for shape and written to placements.npy. Without `keep` it
    only warms up, call for call as a kept pass does, so that a worker that is only timed
    starts its turns as warm as the one beside it. A failed answer if a call fails."""
    import numpy as np
    import torch

    done = _Pass()
    arrays: list[object] = []  # window by window, PLACEMENT_ARRAYS in order: the file's order
    max_elements = protocol.max_placement_elements(windows.shape[1], windows.shape[2], num_replicas)
    for t in range(windows.shape[0]):
        begin = time.perf_counter()
        weight = windows[t].clone()
        try:
            output = entry(weight, *args)
            _synchronize(str(windows.device))
        except BaseException as exc:
            return _failure(exc, f"in the call on window {t}")
        done.call_s.append(time.perf_counter() - begin)
        if not keep:
            continue
        if not isinstance(output, (tuple, list)) or len(output) != len(protocol.PLACEMENT_ARRAYS):
            kind = f"{len(output)} values" if isinstance(output, (tuple, list)) else type(output).__name__
            contract = ", ".join(protocol.PLACEMENT_ARRAYS)
            return protocol.Answer(status="invalid", error=f"returned {kind}; the contract is ({contract})")
        try:
            returned = [_as_array(value, name, max_elements)
                        for name, value in zip(protocol.PLACEMENT_ARRAYS, output, strict=False)]
        except Exception as exc:
            return protocol.Answer(status="invalid", error=f"window {t}: {exc}")
        arrays.extend(_narrowed(array) for array in returned)
        done.first_outputs.append(returned[0])
        try:
            done.input_changed.append(not torch.equal(weight, windows[t]))
        except Exception:  # the candidate swapped the tensor's storage for another dtype or device
            done.input_changed.append(True)
    if keep:
        with open(workdir / protocol.PLACEMENTS_FILE, "wb") as file:
            for array in arrays:
                np.save(file, array, allow_pickle=False)
    return done


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def run(request: protocol.WorkerSettings, workdir: Path) -> protocol.Answer:
    """Run the request; return the answer (without raising for candidate failures)."""
    try:
        module = _import_candidate(workdir / protocol.CANDIDATE_FILE)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt at import are the candidate's too
        return _failure(exc, "at import")
    entry = getattr(module, protocol.ENTRY_POINT, None)
    if not callable(entry):
        return protocol.Answer(status="error",
                               error=f"entry point missing: the program defines no callable {protocol.ENTRY_POINT}()")

    import numpy as np
    import torch

    torch.set_num_threads(request.threads)
    device = request.device
    topology = request.topology
    args = (topology["num_replicas"], topology["num_groups"], topology["num_nodes"], topology["num_gpus"])
    weights = np.load(workdir / protocol.WEIGHTS_FILE, allow_pickle=False)
    windows = torch.from_numpy(weights).to(device=device, dtype=torch.float32)

    passed = _placement_pass(entry, windows, args, topology["num_replicas"], workdir, keep=request.placements)
    if not isinstance(passed, _Pass):
        return passed
    call_s, first_outputs = passed.call_s, passed.first_outputs

    timing = request.timing
    for _ in range(timing["warmup"]):
        begin = time.perf_counter()
        try:
            entry(windows[0].clone(), *args)
            _synchronize(device)
        except BaseException as exc:
            return _failure(exc, "in a warm-up call on window 0")
        call_s.append(time.perf_counter() - begin)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    # A turn is a burst of back-to-back calls lasting about `turn_s`: the first call after
    # the wait for a turn runs on cold caches, and a burst spreads that over its calls.
    fastest_s = min(call_s, default=0.0)  # 0 also where the clock does not move (the parent refuses such samples)
    calls_per_turn = (min(protocol.MAX_CALLS_PER_TURN, max(1, round(timing["turn_s"] / fastest_s)))
                      if fastest_s > 0 else 1)
    samples: list[float] = []
    nondeterministic = False
    # The parent says when to time and on which window (`protocol.Turns`), so that it can
    # alternate this worker's turns with the reference's.
    turns = protocol.Turns(socket.socket(fileno=protocol.TURN_FD))
    # As timeit does: collect once, then no collection of the harness's garbage lands in a
    # sample. Before saying ready, so that the collection is not waited for in a turn.
    gc.collect()
    gc.disable()
    turns.ready()
    try:
        while (t := turns.next_window()) is not None:
            if not 0 <= t < windows.shape[0]:
                return protocol.Answer(status="crash", error=f"the harness asked for window {t}")
            turn_s = 0.0
            for _ in range(calls_per_turn):
                weight = windows[t].clone()
                _synchronize(device)
                begin = time.perf_counter()
                try:
                    output = entry(weight, *args)
                    _synchronize(device)
                except BaseException as exc:
                    return _failure(exc, f"in a timed call on window {t}")
                turn_s += time.perf_counter() - begin
            samples.append(turn_s / calls_per_turn)
            if not nondeterministic and first_outputs:
                try:
                    again = _as_array(output[0], protocol.PLACEMENT_ARRAYS[0])
                    nondeterministic = not np.array_equal(again, first_outputs[t])
                except (ValueError, TypeError, RuntimeError, IndexError, KeyError):
                    nondeterministic = True
            turns.done(samples[-1])
    finally:
        gc.enable()
    device_name, cuda_version, peak_device_memory_bytes = _device_facts(device)
    return protocol.OkAnswer(
        status="ok", error="", runtime_samples_s=samples, calls_per_turn=calls_per_turn,
        input_changed=passed.input_changed,
        nondeterministic=nondeterministic, threads=torch.get_num_threads(), device_name=device_name,
        cuda_version=cuda_version, peak_device_memory_bytes=peak_device_memory_bytes,
    )


def _device_facts(device: str) -> tuple[str, str, int]:
    """(device name, CUDA version, peak device memory in bytes) of the device the call ran on."""
    import torch

    if not device.startswith("cuda"):
        return "cpu", "", 0
    return (torch.cuda.get_device_name(device), torch.version.cuda or "",
            int(torch.cuda.max_memory_allocated(device)))


def _limit_memory(memory_mb: int, device: str) -> None:
    """Cap this process's memory before the candidate runs (set here, not through the
    parent's preexec_fn, which is unsafe in the parent's threads)."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # CUDA reserves far more address space than it uses, so RLIMIT_AS would break it.
    if not device.startswith("cuda"):
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def serve(workdir: Path) -> NoReturn:
    """Run the evaluation whose files are in `workdir`, write its answer, and end the process."""
    request = protocol.WorkerSettings.from_json((workdir / protocol.REQUEST_FILE).read_text())
    _limit_memory(request.memory_mb, request.device)
    try:
        answer = run(request, workdir)
    except BaseException as exc:  # the candidate runs in this process and can break anything in it
        answer = _failure(exc, "in the worker, after the candidate ran")
    # Written last and atomically: the parent reads an answer only if it is whole.
    write_atomically(workdir / protocol.ANSWER_FILE, json.dumps(answer))
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: a candidate's leftover threads or atexit hooks must not
    # turn a finished evaluation into a hang.
    os._exit(0)
