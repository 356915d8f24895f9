"""DeepSeek EPLB: the published expert-parallel load balancer, our own implementation.

Reimplements the algorithm of github.com/deepseek-ai/EPLB (`eplb.py`) from its
description. With `num_groups % num_nodes == 0` the hierarchical policy runs: expert
groups are packed onto nodes with balanced packing, experts are replicated inside each
node to minimise the busiest replica, and each node's physical experts are packed onto
its GPUs. Otherwise the global policy runs through the same path with one group and one
node. Ties always go to the lower index. Like the original it computes on CPU in float32
and returns int64 tensors on the CPU.

The greedy packing is sequential over items (heaviest first) but vectorised over rows,
which gives the same placement as the original's per-row loop.
"""

# EVOLVE-BLOCK-START
import torch


def balanced_packing(weight: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack the items of each row into `num_packs` packs holding equally many items,
    greedily: heaviest item first, into the lightest pack that still has room.

    Args:
        weight: [num_rows, num_items], the weight of each item.
        num_packs: number of packs; must divide num_items.

    Returns:
        pack_index: [num_rows, num_items], the pack of each item.
        rank_in_pack: [num_rows, num_items], the position of each item inside its pack.
    """
    num_rows, num_items = weight.shape
    if num_items % num_packs != 0:
        raise ValueError(f"{num_items} items do not divide evenly into {num_packs} packs")
    num_items_per_pack = num_items // num_packs
    if num_items_per_pack == 1:
        pack_index = torch.arange(num_items, dtype=torch.int64).expand(num_rows, -1).clone()
        return pack_index, torch.zeros(num_rows, num_items, dtype=torch.int64)

    items_by_weight = weight.sort(dim=-1, descending=True, stable=True).indices
    pack_weight = torch.zeros(num_rows, num_packs, dtype=weight.dtype)
    pack_size = torch.zeros(num_rows, num_packs, dtype=torch.int64)
    pack_index = torch.empty(num_rows, num_items, dtype=torch.int64)
    rank_in_pack = torch.empty(num_rows, num_items, dtype=torch.int64)
    rows = torch.arange(num_rows)
    for item in items_by_weight.T:
        open_pack_weight = pack_weight.masked_fill(pack_size >= num_items_per_pack, float("inf"))
        pack = open_pack_weight.argmin(dim=-1)
        pack_index[rows, item] = pack
        rank_in_pack[rows, item] = pack_size[rows, pack]
        pack_weight[rows, pack] += weight[rows, item]
        pack_size[rows, pack] += 1
    return pack_index, rank_in_pack


def replicate_experts(weight: torch.Tensor, num_phy: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replicate the logical experts of each row to `num_phy` physical experts, giving
    each extra replica to the expert with the largest load per replica.

    Args:
        weight: [num_rows, num_log], the load of each logical expert.
        num_phy: number of physical experts per row, at least num_log.

    Returns:
        phy2log: [num_rows, num_phy], the logical expert of each physical expert.
        phy_rank: [num_rows, num_phy], the replica rank of each physical expert.
        logcnt: [num_rows, num_log], the number of replicas of each logical expert.
    """
    num_rows, num_log = weight.shape
    if num_phy < num_log:
        raise ValueError(f"{num_phy} physical experts cannot hold {num_log} logical experts")
    phy2log = torch.arange(num_phy, dtype=torch.int64).repeat(num_rows, 1)
    phy_rank = torch.zeros(num_rows, num_phy, dtype=torch.int64)
    logcnt = torch.ones(num_rows, num_log, dtype=torch.int64)
    rows = torch.arange(num_rows)
    for phy in range(num_log, num_phy):
        busiest = (weight / logcnt).argmax(dim=-1)
        phy2log[:, phy] = busiest
        phy_rank[:, phy] = logcnt[rows, busiest]
        logcnt[rows, busiest] += 1
    return phy2log, phy_rank, logcnt


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """Invert a permutation in each row.

    Args:
        perm: [num_rows, n], a permutation of range(n) in each row.

    Returns:
        inverse: [num_rows, n], with inverse[r, perm[r, i]] = i.
    """
    inverse = torch.empty_like(perm)
    inverse.scatter_(1, perm, torch.arange(perm.size(1), dtype=torch.int64).expand(perm.shape))
    return inverse


def rebalance_experts_hierarchical(
    weight: torch.Tensor, num_physical_experts: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place experts with the hierarchical policy: groups onto nodes, replicas inside
    nodes, physical experts onto the GPUs of their node.

    Args:
        weight: [num_layers, num_logical_experts], float32 load of each logical expert.
        num_physical_experts: number of physical experts (replicas) in all.
        num_groups: number of expert groups; divides num_logical_experts.
        num_nodes: number of nodes; divides num_groups and num_gpus.
        num_gpus: number of GPUs; divides num_physical_experts.

    Returns:
        phy2log: [num_layers, num_physical_experts], the logical expert of each slot.
        phy_rank: [num_layers, num_physical_experts], the replica rank of each slot.
        logcnt: [num_layers, num_logical_experts], the number of replicas of each expert.
    """
    num_layers, num_logical_experts = weight.shape
    if num_logical_experts % num_groups != 0:
        raise ValueError(f"{num_logical_experts} experts do not divide evenly into {num_groups} groups")
    if num_groups % num_nodes != 0:
        raise ValueError(f"{num_groups} groups do not divide evenly over {num_nodes} nodes")
    if num_gpus % num_nodes != 0:
        raise ValueError(f"{num_gpus} GPUs do not divide evenly over {num_nodes} nodes")
    if num_physical_experts % num_gpus != 0:
        raise ValueError(f"{num_physical_experts} replicas do not divide evenly over {num_gpus} GPUs")
    num_experts_per_group = num_logical_experts // num_groups
    num_groups_per_node = num_groups // num_nodes
    num_log_per_node = num_logical_experts // num_nodes
    num_phy_per_node = num_physical_experts // num_nodes
    num_phy_per_gpu = num_physical_experts // num_gpus

    # Step 1: pack groups onto nodes; mlog numbers experts node by node ("meta-logical").
    group_weight = weight.unflatten(-1, (num_groups, num_experts_per_group)).sum(-1)
    group_node, group_rank_in_node = balanced_packing(group_weight, num_nodes)
    group_first_mlog = (group_node * num_groups_per_node + group_rank_in_node) * num_experts_per_group
    log2mlog = (group_first_mlog.unsqueeze(-1) + torch.arange(num_experts_per_group)).flatten(-2)
    mlog2log = inverse_permutation(log2mlog)

    # Step 2: replicate experts inside each node; rows are (layer, node).
    mlog_weight = weight.gather(-1, mlog2log).view(-1, num_log_per_node)
    phy2mlog, phy_rank, mlogcnt = replicate_experts(mlog_weight, num_phy_per_node)

    # Step 3: pack each node's physical experts onto its GPUs.
    phy_weight = (mlog_weight / mlogcnt).gather(-1, phy2mlog)
    phy_gpu, phy_rank_in_gpu = balanced_packing(phy_weight, num_gpus // num_nodes)
    phy2slot = phy_gpu * num_phy_per_gpu + phy_rank_in_gpu
    slot2phy = inverse_permutation(phy2slot)

    slot2mlog = phy2mlog.gather(-1, slot2phy)
    node_first_mlog = torch.arange(0, num_logical_experts, num_log_per_node).view(1, -1, 1)
    slot2mlog = (slot2mlog.view(num_layers, num_nodes, -1) + node_first_mlog).flatten(-2)
    phy2log = mlog2log.gather(-1, slot2mlog)
    slot_rank = phy_rank.gather(-1, slot2phy).view(num_layers, -1)
    logcnt = mlogcnt.view(num_layers, -1).gather(-1, log2mlog)
    return phy2log, slot_rank, logcnt


def rebalance_experts(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plan the physical expert placement for the given expert loads.

    Args:
        weight: [layers, num_logical_experts], the load of each logical expert (any
            device and dtype; it is read, never changed).
        num_replicas: number of physical experts (slots); a multiple of num_gpus.
        num_groups: number of expert groups.
        num_nodes: number of nodes; the hierarchical policy runs when it divides num_groups.
        num_gpus: number of GPUs.

    Returns:
        phy2log: [layers, num_replicas], the logical expert of each slot.
        log2phy: [layers, num_logical_experts, num_replicas - num_logical_experts + 1],
            the slots of each logical expert, padded with -1.
        logcnt: [layers, num_logical_experts], the number of replicas of each expert.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be [layers, num_logical_experts], got shape {tuple(weight.shape)}")
    num_layers, num_logical_experts = weight.shape
    if num_replicas < num_logical_experts:
        raise ValueError(f"{num_replicas} replicas cannot hold {num_logical_experts} logical experts")
    weight = weight.float().cpu()
    if not torch.isfinite(weight).all():
        raise ValueError("weight must hold finite loads")
    if num_groups % num_nodes == 0:
        phy2log, phy_rank, logcnt = rebalance_experts_hierarchical(
            weight, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        phy2log, phy_rank, logcnt = rebalance_experts_hierarchical(weight, num_replicas, 1, 1, num_gpus)

    max_replicas_per_expert = num_replicas - num_logical_experts + 1
    log2phy = torch.full((num_layers, num_logical_experts, max_replicas_per_expert), -1, dtype=torch.int64)
    log2phy.view(num_layers, -1).scatter_(
        -1, phy2log * max_replicas_per_expert + phy_rank,
        torch.arange(num_replicas, dtype=torch.int64).expand(num_layers, -1))
    return phy2log, log2phy, logcnt
# EVOLVE-BLOCK-END
