"""Verdict: invalid: answer: placements.npy ends before log2phy_0

Tries: forging a plausible `ok` answer and a placements file that lacks most of the
arrays the parent will look up.
"""

import json
import os

import numpy as np


np.save("placements.npy", np.zeros((2, 16), dtype=np.int64))
with open("answer.json", "w") as answer:
    json.dump({"status": "ok", "error": "", "runtime_samples_s": [1e-4] * 5, "calls_per_turn": 1,
               "input_changed": [False, False], "nondeterministic": False, "threads": 1,
               "device_name": "cpu", "cuda_version": "", "peak_device_memory_bytes": 0}, answer)
os._exit(0)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
