"""Round robin: slot p holds expert p % experts. A valid placement in microseconds, for
tests and benchmarks that need a near-free candidate (copies differ by a comment)."""

import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    num_layers, num_experts = weight.shape
    experts = torch.arange(num_replicas) % num_experts
    phy2log = experts.repeat(num_layers, 1)
    logcnt = torch.bincount(experts, minlength=num_experts).repeat(num_layers, 1)
    width = -(-num_replicas // num_experts)
    slots = torch.arange(num_experts)[:, None] + num_experts * torch.arange(width)[None, :]
    log2phy = torch.where(slots < num_replicas, slots, -1).repeat(num_layers, 1, 1)
    return phy2log, log2phy, logcnt
