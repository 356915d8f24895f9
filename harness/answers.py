"""What a worker leaves in its folder, read as hostile input: the candidate runs in the
worker's process and can rewrite any of it. `answer.json` and `placements.npy` must be
regular files of bounded size, well formed, with every field the evaluation reads of the
right type; array headers are checked before any array is allocated. Anything else is a
ValueError that names what is wrong, which the sandbox turns into an `invalid` result.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
from pathlib import Path

import numpy as np

from harness import protocol

__all__ = ["checked_answer", "clean_text", "read_placements", "read_regular"]


def clean_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters and made storable (lone surrogates replaced)."""
    return protocol.shorten(text, limit).encode("utf-8", errors="replace").decode("utf-8")


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a file the worker wrote, read without trusting it: a link, FIFO or
    device is refused (opening a FIFO would block forever), and so is anything over
    `limit` bytes. Raises ValueError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ValueError(f"{path.name} cannot be opened: {exc.strerror} (a link?)") from None
    with open(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is over {limit} bytes")
    return data


def checked_answer(raw: bytes, windows: int, wall_s: float) -> protocol.Answer:
    """answer.json (`raw`) of a worker that made a placement pass over `windows` windows
    (0: it made none) and lived `wall_s` seconds, as a dict whose every field the
    evaluation reads is present and of the right type, with plausible timings; ValueError
    naming the field otherwise."""
    try:
        answer = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{protocol.ANSWER_FILE} is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(answer, dict):
        raise ValueError(f"{protocol.ANSWER_FILE} is not a JSON object")
    status, error = answer.get("status"), answer.get("error")
    if status not in protocol.WORKER_STATUSES or not isinstance(error, str):
        raise ValueError(f"{protocol.ANSWER_FILE} has status {clean_text(repr(status), 80)} and a non-text error"
                         if status in protocol.WORKER_STATUSES else
                         f"{protocol.ANSWER_FILE} has status {clean_text(repr(status), 80)}; "
                         f"expected one of {protocol.WORKER_STATUSES}")
    if status != "ok":
        return protocol.Answer(status=status, error=clean_text(error, protocol.ERROR_CHARS))
    samples = answer.get("runtime_samples_s")
    if not (isinstance(samples, list) and samples and all(
            type(s) in (int, float) and math.isfinite(s) and s > 0 for s in samples)):
        raise ValueError("runtime_samples_s must be a non-empty list of positive, finite seconds")
    if sum(samples) > wall_s:
        raise ValueError(f"runtime_samples_s add up to {sum(samples):.3g} s, more than the worker's "
                         f"whole life ({wall_s:.3g} s)")
    calls = answer.get("calls_per_turn")
    if not (type(calls) is int and 1 <= calls <= protocol.MAX_CALLS_PER_TURN):
        raise ValueError(f"calls_per_turn must be a whole number from 1 to {protocol.MAX_CALLS_PER_TURN}")
    changed = answer.get("input_changed")
    if not (isinstance(changed, list) and len(changed) == windows and all(type(c) is bool for c in changed)):
        raise ValueError(f"input_changed must be a list of {windows} booleans")
    for key, kind in protocol.OK_ANSWER_FIELDS.items():
        if type(answer.get(key)) is not kind:
            raise ValueError(f"{key} must be a {kind.__name__}")
    return answer


def read_placements(path: Path, weights_shape: tuple[int, int, int], num_replicas: int) -> dict[str, np.ndarray]:
    """placements.npy of a worker that ran on weights `[windows, layers, experts]`, as
    arrays by `protocol.placement_key`: each record's header is checked before its data
    is taken, and the data are views of the file's bytes, not copies; ValueError otherwise."""
    windows, layers, experts = weights_shape
    member_bytes = 8 * protocol.max_placement_elements(layers, experts, num_replicas)  # as int64
    keys = [protocol.placement_key(name, t) for t in range(windows) for name in protocol.PLACEMENT_ARRAYS]
    raw = read_regular(path, len(keys) * (member_bytes + 4096))
    stream = io.BytesIO(raw)
    arrays = {}
    try:
        for key in keys:
            if stream.tell() == len(raw):
                raise ValueError(f"{protocol.PLACEMENTS_FILE} ends before {key}")
            version = np.lib.format.read_magic(stream)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"{key} has .npy format version {version}")
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(stream)
            count = math.prod(shape)
            if dtype.hasobject or count * dtype.itemsize > member_bytes:
                raise ValueError(f"{key} has shape {list(shape)} and dtype {dtype}; too large or not numeric")
            start = stream.tell()
            if start + count * dtype.itemsize > len(raw):
                raise ValueError(f"{protocol.PLACEMENTS_FILE} ends inside {key}")
            arrays[key] = np.frombuffer(raw, dtype=dtype, count=count, offset=start).reshape(
                shape, order="F" if fortran_order else "C")
            stream.seek(start + count * dtype.itemsize)
    except ValueError:
        raise
    except Exception as exc:  # whatever a corrupt .npy header raises
        raise ValueError(f"{protocol.PLACEMENTS_FILE} cannot be read ({type(exc).__name__}: {exc})") from None
    if stream.tell() != len(raw):
        raise ValueError(f"{protocol.PLACEMENTS_FILE} holds {len(raw) - stream.tell()} bytes after its "
                         f"{len(keys)} arrays")
    return arrays
