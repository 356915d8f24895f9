"""Verdict: invalid: expert 11 of layer 0 has no replica in phy2log

Tries: dropping the last expert (its tokens would have nowhere to go), with logcnt
and log2phy consistent with that phy2log.
"""

import torch


def _placement(phy2log, num_experts):
    """logcnt and log2phy that tell the truth about phy2log [layers, replicas]."""
    num_layers, num_replicas = phy2log.shape
    logcnt = torch.zeros(num_layers, num_experts, dtype=torch.int64)
    logcnt.scatter_add_(1, phy2log, torch.ones_like(phy2log))
    log2phy = torch.full((num_layers, num_experts, int(logcnt.max())), -1, dtype=torch.int64)
    for layer in range(num_layers):
        seen = [0] * num_experts
        for slot, expert in enumerate(phy2log[layer].tolist()):
            log2phy[layer, expert, seen[expert]] = slot
            seen[expert] += 1
    return phy2log, log2phy, logcnt


def _round_robin(weight, num_replicas):
    """A valid placement: slot p holds expert p % experts."""
    num_layers, num_experts = weight.shape
    phy2log = (torch.arange(num_replicas) % num_experts).repeat(num_layers, 1)
    return _placement(phy2log, num_experts)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    num_layers, num_experts = weight.shape
    phy2log = (torch.arange(num_replicas) % (num_experts - 1)).repeat(num_layers, 1)
    return _placement(phy2log, num_experts)
