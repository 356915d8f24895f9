"""Verdict: error: at import: builtins.SyntaxError

Tries: a program that does not parse (an LLM's half-finished edit).
"""

import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus:
    return None
