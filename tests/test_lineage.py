"""Candidates from diffs: the seed variant, chains of diffs, and diffs that do not apply."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from helpers import cli

from harness.candidates import CANDIDATES_DIR, discover, load_candidate
from harness.diffs import read_diff

SEED_DIFF = CANDIDATES_DIR / "diffs" / "peak_aware_tail_and_two_step_fixup.diff"


def test_seed_variant_has_the_seed_replace_text():
    (block,) = read_diff(SEED_DIFF).blocks
    child = load_candidate(SEED_DIFF)
    parent = load_candidate(CANDIDATES_DIR / "seed_parent.py")
    assert block.replace in child.source and block.search not in child.source
    assert child.parent_hash == parent.hash and child.diff_name == "peak_aware_tail_and_two_step_fixup"
    assert child.source == parent.source.replace(block.search, block.replace)


def test_apply_diff_command_writes_the_child_or_refuses_in_one_line(tmp_path):
    child = tmp_path / "child.py"
    done = cli("apply-diff", "candidates/seed_parent.py", str(SEED_DIFF), "-o", str(child))
    assert done.returncode == 0, done.stderr
    assert child.read_text() == load_candidate(SEED_DIFF).source
    bad = tmp_path / "bad.diff"
    bad.write_text("<<<<<<< SEARCH\ndef no_such_function():\n=======\ndef other():\n>>>>>>> REPLACE\n")
    refused = cli("apply-diff", "candidates/seed_parent.py", str(bad), "-o", str(tmp_path / "other.py"))
    assert refused.returncode == 2
    first_line = refused.stderr.splitlines()[0]
    assert first_line.startswith("eplb-harness: error: Block 1") and "was not found in the parent" in first_line
    assert "Traceback" not in refused.stderr and not (tmp_path / "other.py").exists()


def write_chain(folder: Path) -> None:
    """parent.py <- first.diff <- second.diff, declared in parents.toml; broken.diff fails."""
    (folder / "parent.py").write_text((CANDIDATES_DIR / "deepseek_eplb.py").read_text())
    lines = (folder / "parent.py").read_text().splitlines()
    # The first line a search may change: the one after the EVOLVE-BLOCK-START marker.
    anchor = lines[next(i for i, line in enumerate(lines) if "EVOLVE-BLOCK-START" in line) + 1]
    assert lines.count(anchor) == 1
    (folder / "first.diff").write_text(
        f"<NAME>\nfirst\n</NAME>\n<DESCRIPTION>\nA comment.\n</DESCRIPTION>\n<DIFF>\n"
        f"<<<<<<< SEARCH\n{anchor}\n=======\n# first link\n{anchor}\n>>>>>>> REPLACE\n</DIFF>\n")
    (folder / "second.diff").write_text(
        "<<<<<<< SEARCH\n# first link\n=======\n# first link\n# second link\n>>>>>>> REPLACE\n")
    (folder / "broken.diff").write_text("<<<<<<< SEARCH\n# not in the parent\n=======\n# x\n>>>>>>> REPLACE\n")
    (folder / "parents.toml").write_text(
        '"first.diff" = "parent.py"\n"second.diff" = "first.diff"\n"broken.diff" = "parent.py"\n')


def test_a_chain_of_diffs_keeps_every_link(tmp_path):
    write_chain(tmp_path)
    candidates = {c.name: c for c in discover([str(tmp_path)])}
    parent, first, second = candidates["parent"], candidates["first"], candidates["second"]
    assert first.parent_hash == parent.hash and second.parent_hash == first.hash
    assert "# second link" in second.source and second.diff_description == ""
    assert candidates["broken"].patch_error.startswith("Block 1")


def test_run_stores_lineage_and_a_patch_failed_row(tmp_path):
    write_chain(tmp_path)
    np.save(tmp_path / "w.npy", np.random.default_rng(1).random((2, 3, 12)) * 100)
    done = cli("run", str(tmp_path), "--workload", str(tmp_path / "w.npy"), "--num-replicas", "16",
               "--num-groups", "4", "--num-nodes", "2", "--num-gpus", "8", "--results", str(tmp_path / "store"))
    assert done.returncode == 0, done.stderr
    rows = {r["candidate_name"]: r for r in pq.read_table(tmp_path / "store").to_pylist()}
    assert rows["broken"]["status"] == "patch_failed" and "was not found" in rows["broken"]["error"]
    assert {rows[n]["status"] for n in ("parent", "first", "second")} == {"ok"}
    assert rows["second"]["parent_hash"] == rows["first"]["candidate_hash"]
    assert rows["first"]["parent_hash"] == rows["parent"]["candidate_hash"]
    assert rows["first"]["diff_name"] == "first" and rows["first"]["diff_description"] == "A comment."
    assert rows["second"]["diff_hash"] and rows["second"]["diff_hash"] != rows["first"]["diff_hash"]
