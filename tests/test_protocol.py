"""The contract between the sandbox and its worker is written once, in harness.protocol,
and stays light enough for the worker to load before the candidate."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from harness import protocol
from harness.answers import checked_answer, read_placements
from harness.candidates import REFERENCE_PATH
from harness.sandbox import WorkerRequest, run_worker
from harness.settings import TimingConfig

HARNESS = Path(protocol.__file__).parent
SIDES = [HARNESS / "sandbox.py", HARNESS / "answers.py", HARNESS / "worker.py", HARNESS / "zygote.py"]


def _code_strings(path: Path) -> list[str]:
    """Every string constant in the module's code (f-string parts included), docstrings not."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("path", SIDES, ids=lambda path: path.stem)
def test_both_sides_take_the_contract_from_protocol(path):
    source = path.read_text()
    assert re.search(r"^from harness import (.*, )?protocol\b", source, re.M)
    strings = _code_strings(path)
    shared = [protocol.CANDIDATE_FILE, protocol.WEIGHTS_FILE, protocol.REQUEST_FILE, protocol.PLACEMENTS_FILE,
              protocol.ANSWER_FILE, protocol.ENTRY_POINT, protocol.TOKEN_VARIABLE, protocol.ZYGOTE_MODULE,
              protocol.placement_key("phy2log", 0)[:-1]]
    for name in shared:
        assert not [s for s in strings if name in s], f"{path.name} spells {name!r} itself"
    # The answer's keys are read as literals, checked against the TypedDicts that declare them.
    for name in [*protocol.OUT_OF_MEMORY_MARKERS, *protocol.PLACEMENT_ARRAYS]:
        assert name not in strings, f"{path.name} spells {name!r} itself"


@pytest.mark.parametrize("module", ["harness.protocol", "harness.files", "harness.worker"])
def test_what_the_worker_loads_before_the_candidate_is_standard_library(module):
    code = (f"import sys; before = set(sys.modules); import {module}; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert loaded - set(sys.stdlib_module_names) <= {"harness"}, loaded


@pytest.mark.parametrize("text", [
    "builtins.MemoryError: ", "RuntimeError: std::bad_alloc", "OSError: [Errno 12] Cannot allocate memory",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "mmap: can't allocate memory",
    "RuntimeError: [enforce fail at alloc_cpu.cpp:117] not enough memory",
])
def test_out_of_memory_texts_are_recognised(text):
    assert protocol.mentions_out_of_memory(text)
    assert protocol.mentions_out_of_memory(text.upper())


@pytest.mark.parametrize("text", ["", "ValueError: memory layout", "IndexError: out of range", "KeyError: 'mem'"])
def test_other_texts_are_not_out_of_memory(text):
    assert not protocol.mentions_out_of_memory(text)


def test_the_request_file_round_trips():
    settings = protocol.WorkerSettings(topology={"num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8},
                                       device="cpu", threads=2, timing={"warmup": 1, "min_time_s": 0.5},
                                       memory_mb=2048)
    assert protocol.WorkerSettings.from_json(settings.to_json()) == settings
    with pytest.raises(TypeError):
        protocol.WorkerSettings.from_json(json.dumps({"device": "cpu"}))


def test_the_answer_fields_and_their_json_types():
    assert protocol.OK_ANSWER_FIELDS == {
        "status": str, "error": str, "runtime_samples_s": list, "calls_per_turn": int, "input_changed": list,
        "nondeterministic": bool, "threads": int, "device_name": str, "cuda_version": str,
        "peak_device_memory_bytes": int,
    }
    assert protocol.placement_key("log2phy", 3) == "log2phy_3"
    assert protocol.shorten("abcdef", 6) == "abcdef"
    assert protocol.shorten("abcdefgh", 3) == "abc... (8 characters)"
    assert protocol.ERROR_CHARS > protocol.EXCEPTION_MESSAGE_CHARS


def test_an_ok_answer_lacking_a_field_is_refused():
    settings = protocol.WorkerSettings(topology={"num_replicas": 16}, device="cpu", threads=1, timing={},
                                       memory_mb=1024)
    request = WorkerRequest(source="", weights=np.ones((2, 2, 12)), settings=settings, timeout_s=1.0)
    whole = {"status": "ok", "error": "", "runtime_samples_s": [0.01], "calls_per_turn": 1,
             "input_changed": [False, False], "nondeterministic": False, "threads": 1, "device_name": "cpu",
             "cuda_version": "", "peak_device_memory_bytes": 0}
    assert checked_answer(json.dumps(whole).encode(), request.weights.shape[0], wall_s=1.0) == whole
    for calls in (0, protocol.MAX_CALLS_PER_TURN + 1, 1.0):
        with pytest.raises(ValueError, match="calls_per_turn must be a whole number from 1 to 1000"):
            checked_answer(json.dumps({**whole, "calls_per_turn": calls}).encode(), 2, wall_s=1.0)
    for field in protocol.OK_ANSWER_FIELDS:
        forged = {key: value for key, value in whole.items() if key != field}
        with pytest.raises(ValueError, match=field if field not in ("status", "error") else "status"):
            checked_answer(json.dumps(forged).encode(), request.weights.shape[0], wall_s=1.0)


def test_the_worker_answers_with_exactly_the_protocol_fields():
    weights = np.random.default_rng(0).random((2, 2, 12)) * 100
    settings = protocol.WorkerSettings(
        topology={"num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}, device="cpu", threads=1,
        timing=asdict(TimingConfig(warmup=0, min_samples=1, max_samples=2, min_time_s=0.0)), memory_mb=4096)
    outcome = run_worker(WorkerRequest(source=REFERENCE_PATH.read_text(), weights=weights, settings=settings,
                                       timeout_s=120))
    assert (outcome.status, outcome.answer["status"]) == ("", "ok"), (outcome.error, outcome.answer)
    assert set(outcome.answer) == set(protocol.OK_ANSWER_FIELDS)
    assert set(outcome.placements) == {protocol.placement_key(array, t)
                                       for array in protocol.PLACEMENT_ARRAYS for t in range(2)}


def test_placements_are_read_record_by_record_and_nothing_else_is_taken(tmp_path):
    shape, path = (2, 3, 4), tmp_path / protocol.PLACEMENTS_FILE
    arrays = [np.arange(6, dtype=np.int16).reshape(3, 2), np.full((3, 4, 2), -1, dtype=np.int32),
              np.ones((3, 4), dtype=np.int64)] * 2

    def write(records: list, tail: bytes = b"") -> Path:
        with open(path, "wb") as file:
            for array in records:
                np.save(file, array)
            file.write(tail)
        return path

    read = read_placements(write(arrays), shape, num_replicas=6)
    assert list(read) == ["phy2log_0", "log2phy_0", "logcnt_0", "phy2log_1", "log2phy_1", "logcnt_1"]
    assert all((read[key] == array).all() and read[key].dtype == array.dtype
               for key, array in zip(read, arrays, strict=True))
    with pytest.raises(ValueError, match="ends before logcnt_1"):
        read_placements(write(arrays[:5]), shape, num_replicas=6)
    with pytest.raises(ValueError, match="holds 3 bytes after its 6 arrays"):
        read_placements(write(arrays, b"abc"), shape, num_replicas=6)
    with pytest.raises(ValueError, match="ends inside logcnt_1"):
        path.write_bytes(write(arrays).read_bytes()[:-8])
        read_placements(path, shape, num_replicas=6)
    with pytest.raises(ValueError, match="too large or not numeric"):
        read_placements(write([np.zeros((1000,), dtype=np.int64)] + arrays[1:]), shape, num_replicas=6)
    with pytest.raises(ValueError, match="too large or not numeric"):
        read_placements(write([np.array(["x"], dtype=object)] + arrays[1:]), shape, num_replicas=6)
