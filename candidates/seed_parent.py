"""An evolved EPLB program: the parent of the seed diff `peak_aware_tail_and_two_step_fixup`.

This is the kind of program an evolutionary search grows from DeepSeek EPLB. It keeps the
hierarchical plan (expert groups onto nodes, replicas inside nodes, physical experts onto
the GPUs of their node; one group and one node when the groups do not divide over the
nodes) and changes two stages:
- replication: D'Hondt for the bulk of the extra replicas, Sainte-Lague for the last
  tenth, then one donor-to-receiver move per row when it lowers the busiest replica;
- packing: greedy heaviest-first packing vectorised over rows, then a few rounds that
  swap one item between the heaviest and the lightest pack when that narrows their gap.
Everything runs on the device of the input weight, which is never changed.
"""

# EVOLVE-BLOCK-START
import torch

NUM_SWAP_ROUNDS = 4


def balanced_packing(weight: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack the items of each row into `num_packs` packs holding equally many items:
    heaviest item first into the lightest open pack (ties to the lower index), then
    `NUM_SWAP_ROUNDS` rounds of heaviest-lightest pack swaps.

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
    device = weight.device
    rows = torch.arange(num_rows, device=device)

    items_by_weight = weight.sort(dim=-1, descending=True, stable=True).indices
    pack_weight = torch.zeros(num_rows, num_packs, dtype=weight.dtype, device=device)
    pack_size = torch.zeros(num_rows, num_packs, dtype=torch.int64, device=device)
    pack_items = torch.empty(num_rows, num_packs, num_items_per_pack, dtype=torch.int64, device=device)
    for item in items_by_weight.T:
        open_pack_weight = pack_weight.masked_fill(pack_size >= num_items_per_pack, float("inf"))
        pack = open_pack_weight.argmin(dim=-1)
        pack_items[rows, pack, pack_size[rows, pack]] = item
        pack_weight[rows, pack] += weight[rows, item]
        pack_size[rows, pack] += 1

    if num_packs > 1 and num_items_per_pack > 1:
        swap_heaviest_lightest(weight, pack_items, NUM_SWAP_ROUNDS)

    item_pack = torch.arange(num_packs, device=device).repeat_interleave(num_items_per_pack)
    item_rank = torch.arange(num_items_per_pack, device=device).repeat(num_packs)
    pack_index = torch.empty(num_rows, num_items, dtype=torch.int64, device=device)
    rank_in_pack = torch.empty(num_rows, num_items, dtype=torch.int64, device=device)
    pack_index.scatter_(1, pack_items.flatten(1), item_pack.expand(num_rows, -1))
    rank_in_pack.scatter_(1, pack_items.flatten(1), item_rank.expand(num_rows, -1))
    return pack_index, rank_in_pack


def swap_heaviest_lightest(weight: torch.Tensor, pack_items: torch.Tensor, num_rounds: int) -> None:
    """In each row, swap the item pair between the heaviest and the lightest pack whose
    weight difference is closest to half their gap (only pairs that narrow it), for
    `num_rounds` rounds. Changes `pack_items` in place.

    Args:
        weight: [num_rows, num_items], the weight of each item.
        pack_items: [num_rows, num_packs, num_items_per_pack], the items of each pack.
        num_rounds: number of swap rounds.
    """
    num_rows, num_packs, num_items_per_pack = pack_items.shape
    rows = torch.arange(num_rows, device=weight.device)
    for _ in range(num_rounds):
        item_weight = weight.gather(-1, pack_items.flatten(1)).view_as(pack_items)
        pack_weight = item_weight.sum(-1)
        heaviest = pack_weight.argmax(dim=-1)
        lightest = pack_weight.argmin(dim=-1)
        gap = (pack_weight[rows, heaviest] - pack_weight[rows, lightest]).view(-1, 1, 1)
        weight_moved = item_weight[rows, heaviest].unsqueeze(-1) - item_weight[rows, lightest].unsqueeze(-2)
        narrows_gap = (weight_moved > 0) & (weight_moved < gap)
        miss = (weight_moved - gap / 2).abs().masked_fill(~narrows_gap, float("inf")).flatten(1)
        best_pair = miss.argmin(dim=-1)
        do_swap = torch.isfinite(miss[rows, best_pair])
        heavy_pos = best_pair // num_items_per_pack
        light_pos = best_pair % num_items_per_pack
        heavy_item = pack_items[rows, heaviest, heavy_pos]
        light_item = pack_items[rows, lightest, light_pos]
        pack_items[rows, heaviest, heavy_pos] = torch.where(do_swap, light_item, heavy_item)
        pack_items[rows, lightest, light_pos] = torch.where(do_swap, heavy_item, light_item)


def replicate_experts(
        weight: torch.Tensor,
        num_phy: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Replicate `num_log` experts to `num_phy` replicas, such that the maximum
    load of all replicas is minimized.

    Parameters:
        weight: [X, num_log]
        num_phy: total number of experts after replication

    Returns:
        phy2log: [X, num_phy], logical expert id of each physical expert
        rank: [X, num_phy], the replica rank
        logcnt: [X, num_log], number of replicas for each logical expert
    """
    n, num_log = weight.shape
    num_redundant = num_phy - num_log
    assert num_redundant >= 0
    device = weight.device

    # Initialize base mapping (one replica per logical expert)
    phy2log = torch.arange(num_phy, dtype=torch.int64, device=device).repeat(n, 1)
    rank = torch.zeros(n, num_phy, dtype=torch.int64, device=device)
    logcnt = torch.ones(n, num_log, dtype=torch.int64, device=device)

    if num_redundant == 0:
        return phy2log, rank, logcnt

    arangen = torch.arange(n, dtype=torch.int64, device=device)

    # Hybrid allocation: D'Hondt for bulk, Sainte-Laguë for the last ~10% (at least 1)
    tail = max(1, (num_redundant + 9) // 10)
    bulk = num_redundant - tail

    col = num_log
    # Bulk phase (D'Hondt): benefit = weight / r
    for _ in range(bulk):
        benefit = weight / logcnt
        best = benefit.max(dim=-1).indices
        phy2log[:, col] = best
        rank[:, col] = logcnt[arangen, best]
        logcnt[arangen, best] += 1
        col += 1

    # Tail phase (Sainte-Laguë): benefit = weight / (2r - 1)
    if tail > 0:
        for _ in range(tail):
            denom = (2 * logcnt - 1).to(weight.dtype)
            benefit = weight / denom
            best = benefit.max(dim=-1).indices
            phy2log[:, col] = best
            rank[:, col] = logcnt[arangen, best]
            logcnt[arangen, best] += 1
            col += 1

    # Strengthened replication fix-up per row:
    # Evaluate moves from top-2 donors (by avg load) to bottom-2 receivers and
    # apply the single best move if it strictly reduces the peak.
    if num_log > 1 and num_redundant > 0:
        avg = weight / logcnt.to(weight.dtype)  # [n, num_log]
        kdon = min(2, num_log)
        krec = min(2, num_log)
        top2_vals, top2_idx = torch.topk(avg, k=kdon, dim=-1, largest=True)
        bot2_vals, bot2_idx = torch.topk(avg, k=krec, dim=-1, largest=False)
        cur_max = avg.max(dim=-1).values
        argmax_idx = avg.argmax(dim=-1)

        rows = torch.arange(n, dtype=torch.int64, device=device)
        for ri in rows.tolist():
            best_new_peak = None
            best_pair = None

            donors = top2_idx[ri].tolist()
            receivers = bot2_idx[ri].tolist()

            for d in donors:
                cd = int(logcnt[ri, d].item())
                if cd <= 1:
                    continue
                for r in receivers:
                    if d == r:
                        continue
                    cr = int(logcnt[ri, r].item())

                    # Baseline peak ignoring donor if donor is current max
                    baseline_other = float(cur_max[ri].item())
                    if d == int(argmax_idx[ri].item()):
                        # second-best under current configuration
                        baseline_other = float(torch.topk(avg[ri], k=2, largest=True).values[1].item())

                    new_d = float(weight[ri, d].item()) / float(cd - 1)
                    new_r = float(weight[ri, r].item()) / float(cr + 1)
                    candidate_peak = max(baseline_other, new_d, new_r)

                    if candidate_peak + 1e-12 < float(cur_max[ri].item()):
                        if best_new_peak is None or candidate_peak < best_new_peak:
                            best_new_peak = candidate_peak
                            best_pair = (d, r)

            if best_pair is not None:
                d, r = best_pair
                # Choose a physical column corresponding to donor's highest rank (prefer the last replica)
                donor_cols = torch.nonzero(phy2log[ri] == d, as_tuple=False).squeeze(1)
                if donor_cols.numel() == 0:
                    continue
                maxr_idx = torch.argmax(rank[ri, donor_cols]).item()
                col_idx = donor_cols[maxr_idx]

                # Assign this physical replica to receiver with new rank equal to current receiver count
                new_rank = int(logcnt[ri, r].item())
                phy2log[ri, col_idx] = r
                rank[ri, col_idx] = new_rank

                # Update counts
                logcnt[ri, d] -= 1
                logcnt[ri, r] += 1

    return phy2log, rank, logcnt


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """Invert a permutation in each row.

    Args:
        perm: [num_rows, n], a permutation of range(n) in each row.

    Returns:
        inverse: [num_rows, n], with inverse[r, perm[r, i]] = i.
    """
    positions = torch.arange(perm.size(1), dtype=torch.int64, device=perm.device)
    return torch.empty_like(perm).scatter_(1, perm, positions.expand(perm.shape))


def rebalance_experts_hierarchical(
    weight: torch.Tensor, num_physical_experts: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place experts hierarchically: groups onto nodes, replicas inside each node,
    each node's physical experts onto its GPUs.

    Args:
        weight: [num_layers, num_logical_experts], float load of each logical expert.
        num_physical_experts: number of physical experts (slots) in all.
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
    device = weight.device
    num_experts_per_group = num_logical_experts // num_groups
    num_groups_per_node = num_groups // num_nodes
    num_log_per_node = num_logical_experts // num_nodes
    num_phy_per_node = num_physical_experts // num_nodes
    num_phy_per_gpu = num_physical_experts // num_gpus

    # Groups onto nodes; node-local expert ids (nlog) run node by node.
    group_weight = weight.unflatten(-1, (num_groups, num_experts_per_group)).sum(-1)
    group_node, group_rank_in_node = balanced_packing(group_weight, num_nodes)
    group_first_nlog = (group_node * num_groups_per_node + group_rank_in_node) * num_experts_per_group
    expert_in_group = torch.arange(num_experts_per_group, dtype=torch.int64, device=device)
    log2nlog = (group_first_nlog.unsqueeze(-1) + expert_in_group).flatten(-2)
    nlog2log = inverse_permutation(log2nlog)

    # Replicas inside each node; rows are (layer, node).
    nlog_weight = weight.gather(-1, nlog2log).view(num_layers * num_nodes, num_log_per_node)
    phy2nlog, phy_rank, nlogcnt = replicate_experts(nlog_weight, num_phy_per_node)

    # Each node's physical experts onto its GPUs.
    phy_weight = (nlog_weight / nlogcnt).gather(-1, phy2nlog)
    phy_gpu, phy_rank_in_gpu = balanced_packing(phy_weight, num_gpus // num_nodes)
    slot2phy = inverse_permutation(phy_gpu * num_phy_per_gpu + phy_rank_in_gpu)

    node_first_nlog = torch.arange(0, num_logical_experts, num_log_per_node, device=device).view(1, -1, 1)
    slot2nlog = (phy2nlog.gather(-1, slot2phy).view(num_layers, num_nodes, -1) + node_first_nlog).flatten(-2)
    phy2log = nlog2log.gather(-1, slot2nlog)
    slot_rank = phy_rank.gather(-1, slot2phy).view(num_layers, -1)
    logcnt = nlogcnt.view(num_layers, -1).gather(-1, log2nlog)
    return phy2log, slot_rank, logcnt


def rebalance_experts(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plan the physical expert placement for the given expert loads.

    Args:
        weight: [layers, num_logical_experts], the load of each logical expert, on any
            device; it is read, never changed.
        num_replicas: number of physical experts (slots); a multiple of num_gpus.
        num_groups: number of expert groups.
        num_nodes: number of nodes; the hierarchical plan runs when it divides num_groups.
        num_gpus: number of GPUs.

    Returns (int64, on the device of weight):
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
    weight = weight.detach().float()
    if num_groups % num_nodes == 0:
        phy2log, phy_rank, logcnt = rebalance_experts_hierarchical(
            weight, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        phy2log, phy_rank, logcnt = rebalance_experts_hierarchical(weight, num_replicas, 1, 1, num_gpus)

    max_replicas_per_expert = num_replicas - num_logical_experts + 1
    log2phy = torch.full((num_layers, num_logical_experts, max_replicas_per_expert), -1,
                         dtype=torch.int64, device=weight.device)
    slots = torch.arange(num_replicas, dtype=torch.int64, device=weight.device)
    log2phy.view(num_layers, -1).scatter_(
        -1, phy2log * max_replicas_per_expert + phy_rank, slots.expand(num_layers, -1))
    return phy2log, log2phy, logcnt
# EVOLVE-BLOCK-END
