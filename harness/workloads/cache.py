"""A cache of parsed workload files, so a trace is parsed once, not on every evaluation.

Streaming a 34 MB ADRS `expert-load.json` through ijson takes about half a second on a
2-core machine (`benchmarks/bench_trace_cache.py`); loading the arrays it becomes takes
about a millisecond. An entry is one `.npz` file (no pickle) in the
cache folder:

- where: `$EPLB_HARNESS_CACHE` if set (`none` or `off` turns the cache off), else
  `$XDG_CACHE_HOME/eplb-harness/workloads`, else `~/.cache/eplb-harness/workloads`;
- named by a hash of (reader version, resolved path, window steps), so a file that
  changes replaces its entry instead of adding one;
- valid only while the file's size and modification time (ns) are those it was parsed
  at, and the reader version and window steps are the same: the entry records them, and
  a mismatch is a miss;
- kept only for a file last modified at least `SETTLE_S` before it was parsed: a
  filesystem's clock ticks coarsely (milliseconds, up to seconds), so a file rewritten
  in place twice within a tick, at the same size, would look unchanged (git's "racy
  clean" problem). A fresh file is parsed every time until it settles;
- written with `write_atomically`: concurrent runs each write a whole entry and the last
  rename wins; a reader sees one whole entry or none;
- best effort: an entry that cannot be read (truncated, corrupt, another layout) is a
  miss and is written again; a folder that cannot be written is left alone.

The stat is taken before parsing, so a file changed while it was parsed is stored under
its old stat and parsed again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from harness.files import write_atomically

__all__ = ["CACHE_ENV", "SETTLE_S", "FileStamp", "cache_dir", "load", "stamp", "store"]

CACHE_ENV = "EPLB_HARNESS_CACHE"
SETTLE_S = 2.0  # a file modified more recently than this is not cached
_OFF = ("none", "off")
_STAMP_KEY = "_source"  # the entry's record of what it was parsed from

# What an entry is valid for: path, size, mtime_ns, window_steps, version, and whether the
# file had settled (only settled files are cached).
FileStamp = dict[str, object]


def cache_dir() -> Path | None:
    """The folder entries live in, None when the cache is off (read on every call, so a
    test or a caller can point it elsewhere at any time)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in _OFF else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eplb-harness" / "workloads"


def stamp(path: Path, window_steps: int, version: int) -> FileStamp:
    """What an entry for `path` read with `window_steps` by reader `version` records."""
    resolved = path.resolve()
    stat = resolved.stat()
    settled = stat.st_mtime_ns < time.time_ns() - int(SETTLE_S * 1e9)
    return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "window_steps": window_steps, "version": version, "settled": settled}


def _entry(folder: Path, source: FileStamp) -> Path:
    key = json.dumps([source["version"], source["path"], source["window_steps"]])
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"


def load(source: FileStamp) -> dict[str, np.ndarray] | None:
    """The arrays stored for `source`, None on a miss (no entry, a stale one, one that
    cannot be read, a file that has not settled, or the cache off)."""
    folder = cache_dir()
    if folder is None or not source["settled"]:
        return None
    try:
        with np.load(_entry(folder, source), allow_pickle=False) as archive:
            if json.loads(str(archive[_STAMP_KEY])) != source:
                return None
            return {name: archive[name] for name in archive.files if name != _STAMP_KEY}
    except Exception:  # a missing, truncated or foreign file is a miss, whatever numpy raises
        return None


def store(source: FileStamp, arrays: dict[str, np.ndarray]) -> None:
    """Keep `arrays` (names of Python identifiers, no object arrays) for `source`."""
    folder = cache_dir()
    if folder is None or not source["settled"]:
        return
    payload = {**arrays, _STAMP_KEY: np.array(json.dumps(source))}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(_entry(folder, source), lambda handle: np.savez(handle, **payload))
    except OSError:  # a read-only or full disk costs the next run a parse, nothing more
        pass
