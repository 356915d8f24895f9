"""Verdict: crash: out of memory

Tries: allocating (and touching) 256 MiB blocks until memory runs out. The worker's
memory cap must stop it long before the machine suffers.
"""

import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    hog = []
    while True:
        hog.append(torch.ones(64 * 2**20))
