"""Verdict: error: entry point missing

Tries: a program whose function has the wrong name.
"""


def rebalance_expert(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never called")
