"""The cache of parsed workload files (`harness.workloads.cache`): a second read is served
from it, a changed file is parsed again, a bad entry is a miss, concurrent writers are safe."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_workloads_readers import steps_array, write_adrs

from harness.workloads import cache, read_loads, readers

HOUR_NS = 3600 * 10**9


@pytest.fixture
def cache_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def parses(monkeypatch) -> list[Path]:
    """The files `read_loads` parsed (rather than found in the cache)."""
    seen: list[Path] = []
    parse = readers._parse

    def counted(path, window_steps):
        seen.append(path)
        return parse(path, window_steps)

    monkeypatch.setattr(readers, "_parse", counted)
    return seen


def settled_adrs(path: Path, seed: int = 0, age_ns: int = HOUR_NS) -> Path:
    """An ADRS expert-load.json last modified `age_ns` ago (a trace that has settled)."""
    write_adrs(path, steps_array(steps=7, seed=seed))
    stamp = time.time_ns() - age_ns
    os.utime(path, ns=(stamp, stamp))
    return path


def test_the_second_read_comes_from_the_cache(cache_folder, parses, tmp_path):
    path = settled_adrs(tmp_path / "expert-load.json")
    first = read_loads(path, window_steps=3)
    second = read_loads(path, window_steps=3)
    assert parses == [path]
    np.testing.assert_array_equal(second.weights, first.weights)
    assert (second.format, second.notes, second.partial_last) == (first.format, first.notes, first.partial_last)
    assert second.weights.dtype == np.float64 and len(list(cache_folder.glob("*.npz"))) == 1
    read_loads(path, window_steps=2)  # other windows: another parse, another entry
    assert len(parses) == 2 and len(list(cache_folder.glob("*.npz"))) == 2


def test_a_changed_file_is_parsed_again(cache_folder, parses, tmp_path):
    path = settled_adrs(tmp_path / "expert-load.json", seed=0)
    before = read_loads(path, window_steps=3)
    settled_adrs(path, seed=1, age_ns=HOUR_NS // 2)  # new loads, a later modification time
    after = read_loads(path, window_steps=3)
    assert len(parses) == 2 and not np.array_equal(before.weights, after.weights)
    assert len(list(cache_folder.glob("*.npz"))) == 1  # the entry was replaced, not added to


def test_a_freshly_written_file_is_not_cached(cache_folder, parses, tmp_path):
    path = write_adrs(tmp_path / "expert-load.json", steps_array(steps=7))
    read_loads(path, window_steps=3)
    read_loads(path, window_steps=3)
    assert len(parses) == 2 and not cache_folder.exists()


def test_a_corrupt_entry_is_ignored_and_written_again(cache_folder, parses, tmp_path):
    path = settled_adrs(tmp_path / "expert-load.json")
    expected = read_loads(path, window_steps=3).weights
    (entry,) = cache_folder.glob("*.npz")
    for garbage in (b"", b"PK\x03\x04 not a zip", entry.read_bytes()[:100]):
        entry.write_bytes(garbage)
        np.testing.assert_array_equal(read_loads(path, window_steps=3).weights, expected)
    assert len(parses) == 4
    read_loads(path, window_steps=3)
    assert len(parses) == 4  # rewritten whole the last time


def test_the_cache_is_off_with_none_and_has_a_default_home(monkeypatch, parses, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, "none")
    path = settled_adrs(tmp_path / "expert-load.json")
    read_loads(path, window_steps=3)
    read_loads(path, window_steps=3)
    assert len(parses) == 2 and cache.cache_dir() is None
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "eplb-harness" / "workloads"


def test_two_processes_writing_one_entry_at_once_both_complete(cache_folder, tmp_path):
    path = settled_adrs(tmp_path / "expert-load.json")
    script = textwrap.dedent(f"""
        import numpy as np
        from harness.workloads import cache, read_loads
        source = cache.stamp(__import__("pathlib").Path({str(path)!r}), 3, -1)
        weights = np.arange(58 * 256 * 4, dtype=np.float64).reshape(4, 58, 256)
        for _ in range(60):
            cache.store(source, {{"weights": weights}})
            got = cache.load(source)
            assert got is not None and np.array_equal(got["weights"], weights)
        assert read_loads({str(path)!r}, window_steps=3).weights.shape == (3, 3, 8)
    """)
    env = {**os.environ, cache.CACHE_ENV: str(cache_folder)}
    workers = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    assert sorted(p.suffix for p in cache_folder.iterdir()) == [".npz", ".npz"]  # no partial file left
