"""Candidates: the programs to score, from files, folders and diffs against a parent.

A `Candidate` is a program's source with its content hash and lineage. A diff becomes a
candidate by applying it to its parent, which is named by `--parent` or declared beside
the diffs in `parents.toml` (`"child.diff" = "../parent.py"`, paths relative to that
file); a parent may itself be a diff, so a chain keeps every link. A diff that does not
apply still yields a candidate, carrying the refusal in `patch_error`, so it is scored as
a `patch_failed` row instead of stopping the run.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from harness.diffs import DiffError, apply_diff, read_diff
from harness.errors import HarnessError

CANDIDATES_DIR = Path(__file__).resolve().parent.parent / "candidates"
REFERENCE_PATH = CANDIDATES_DIR / "deepseek_eplb.py"
PROGRAM_SUFFIXES = {".py"}
DIFF_SUFFIXES = {".diff", ".txt"}
PARENTS_FILE = "parents.toml"


@dataclass(frozen=True)
class Candidate:
    """A program to score. `hash` identifies the source; lineage fields are empty for a
    program given as a file."""

    name: str
    source: str
    hash: str
    path: str
    parent_hash: str = ""
    diff_name: str = ""
    diff_description: str = ""
    diff_hash: str = ""
    patch_error: str = ""


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _read_program(path: Path) -> Candidate:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"candidate {path} cannot be read: {exc.strerror or exc}") from exc
    return Candidate(name=path.stem, source=source, hash=source_hash(source), path=str(path))


def declared_parent(diff_path: Path) -> Path | None:
    """The parent that `parents.toml` beside `diff_path` declares for it, if any."""
    manifest = diff_path.parent / PARENTS_FILE
    if not manifest.is_file():
        return None
    try:
        parents = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HarnessError(f"{manifest} cannot be read: {exc}") from exc
    entry = parents.get(diff_path.name)
    return (manifest.parent / entry).resolve() if entry else None


def load_diff_candidate(diff_path: Path, parent_path: Path | None = None) -> Candidate:
    """The child of applying `diff_path` to its parent (given, else declared)."""
    parent_path = parent_path or declared_parent(diff_path)
    if parent_path is None:
        raise HarnessError(
            f"diff {diff_path} has no parent: give --parent or declare it in {diff_path.parent / PARENTS_FILE}"
        )
    parent = load_candidate(parent_path)
    diff = read_diff(diff_path)
    lineage = dict(parent_hash=parent.hash, diff_name=diff.name, diff_description=diff.description,
                   diff_hash=diff.hash, path=str(diff_path))
    if parent.patch_error:
        error = f"parent {parent.name} did not build: {parent.patch_error}"
        return Candidate(name=diff.name, source="", hash=source_hash(parent.hash + diff.hash),
                         patch_error=error, **lineage)
    try:
        child = apply_diff(parent.source, diff)
    except DiffError as exc:
        return Candidate(name=diff.name, source="", hash=source_hash(parent.hash + diff.hash),
                         patch_error=str(exc), **lineage)
    return Candidate(name=diff.name, source=child.source, hash=source_hash(child.source), **lineage)


def load_candidate(path: Path, parent_path: Path | None = None) -> Candidate:
    """One candidate from a program file or a diff file."""
    if not path.exists():
        raise HarnessError(f"candidate {path} does not exist")
    if path.suffix in DIFF_SUFFIXES:
        return load_diff_candidate(path, parent_path)
    if path.suffix in PROGRAM_SUFFIXES:
        return _read_program(path)
    raise HarnessError(f"candidate {path} is neither a program (.py) nor a diff (.diff, .txt)")


def discover(paths: list[str], parent: str | None = None) -> list[Candidate]:
    """The candidates named on a command line: files, or folders whose `.py` programs and
    `.diff` diffs (one level of sub-folders included) are all taken; default the shipped
    `candidates/`."""
    parent_path = Path(parent) if parent else None
    if parent_path is not None and not parent_path.is_file():
        raise HarnessError(f"parent program {parent_path} does not exist")
    found: list[Candidate] = []
    for arg in paths or [str(CANDIDATES_DIR)]:
        path = Path(arg)
        if path.is_dir():
            members = sorted(p for p in [*path.glob("*"), *path.glob("*/*")]
                             if p.is_file() and p.suffix in {".py", ".diff"}
                             and not p.name.startswith(("_", ".")))
            if not members:
                raise HarnessError(f"candidate folder {path} holds no programs or diffs")
            found.extend(load_candidate(p, parent_path) for p in members)
        else:
            found.append(load_candidate(path, parent_path))
    return found
