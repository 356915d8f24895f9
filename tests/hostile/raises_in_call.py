"""Verdict: error: in the call on window 0: candidate.PlanningError: no plan for you

Tries: raising its own exception class; the row stores it as `module.Class: message`.
"""


class PlanningError(Exception):
    pass


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise PlanningError("no plan for you")
