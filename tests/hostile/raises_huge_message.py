"""Verdict: error: in the call on window 0: builtins.ValueError: ?xxxxxxxx

Tries: an exception whose message is 50 MB long and starts with a lone surrogate that
UTF-8 (and so Parquet) cannot encode. The stored error must be short and storable
(the surrogate stored as `?`).
"""


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise ValueError("\ud800" + "x" * 50_000_000)
