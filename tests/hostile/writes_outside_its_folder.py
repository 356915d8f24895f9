"""Verdict: error: Read-only file system
Flags: confined

Tries: writing a file into a folder the test made outside the evaluation's temporary
folder, in a place a confined worker still sees (beside the Python environment). Every
mount but the work folder is read-only: the write fails, and nothing is written.
"""

import os

FOLDER = "@OUTSIDE_FOLDER@"


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    with open(os.path.join(FOLDER, "written-by-a-candidate.txt"), "w") as file:
        file.write("a candidate was here\n")
    raise RuntimeError("wrote outside the work folder")
