"""Verdict: timeout: no answer within

Tries: sleeping forever while the module is imported, before any entry point exists.
"""

import time


time.sleep(100_000)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
