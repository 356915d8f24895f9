"""Verdict: error: at import: builtins.SystemExit: 7

Tries: sys.exit(7) while being imported. SystemExit is not an Exception; the worker
must still catch it and report it as the candidate's error.
"""

import sys


sys.exit(7)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
