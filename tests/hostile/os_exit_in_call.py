"""Verdict: crash: exited with code 3

Tries: leaving the process with os._exit(3) from inside the call, skipping every
handler, so no answer is ever written.
"""

import os


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    os._exit(3)
