"""The shipped candidate programs: the DeepSeek EPLB reference, the seed diff's parent and
the child the seed diff makes from it. They are loaded by path (they are not part of the
package) and their placements are checked against the candidate contract in numpy."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import README_PHY2LOG, README_WEIGHT

from harness.candidates import load_candidate

REPO = Path(__file__).resolve().parent.parent
CANDIDATES = REPO / "candidates"
SEED_DIFF = CANDIDATES / "diffs" / "peak_aware_tail_and_two_step_fixup.diff"

# (num_layers, num_experts, num_replicas, num_groups, num_nodes, num_gpus)
SHAPES = {
    "deepseek-v3": (58, 256, 288, 8, 4, 32),
    "readme": (2, 12, 16, 4, 2, 8),
    "three-slots-per-gpu": (3, 16, 24, 4, 2, 8),
    "global-path": (5, 48, 60, 4, 3, 6),  # 4 groups do not divide over 3 nodes
    "no-redundant-hierarchical": (6, 32, 32, 4, 2, 8),
    "no-redundant-global": (3, 24, 24, 4, 3, 6),
    "one-node": (4, 20, 30, 5, 1, 3),
}


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_search_replace() -> tuple[str, str]:
    """The SEARCH and REPLACE texts of the seed diff."""
    text = SEED_DIFF.read_text()
    start = text.index("<<<<<<< SEARCH\n") + len("<<<<<<< SEARCH\n")
    middle = text.index("\n=======\n", start)
    end = text.index("\n>>>>>>> REPLACE", middle)
    return text[start:middle], text[middle + len("\n=======\n"):end]


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict:
    parent_path = CANDIDATES / "seed_parent.py"
    parent_source = parent_path.read_text()
    search, replace = seed_search_replace()
    assert parent_source.count(search) == 1
    folder = tmp_path_factory.mktemp("child")
    child_path = folder / "seed_child.py"
    child_path.write_text(parent_source.replace(search, replace, 1))
    loaded = {
        "deepseek": load_module("deepseek_eplb", CANDIDATES / "deepseek_eplb.py"),
        "seed_parent": load_module("seed_parent", parent_path),
        "seed_child": load_module("seed_child", child_path),
    }
    for name in CHAMPIONS:  # the ends of the two chains of diffs (docs/search.md)
        champion = load_candidate(CANDIDATES / "diffs" / f"{name}.diff")
        assert not champion.patch_error, champion.patch_error
        (folder / f"{name}.py").write_text(champion.source)
        loaded[name] = load_module(name, folder / f"{name}.py")
    return loaded


PROGRAM_NAMES = ["deepseek", "seed_parent", "seed_child"]
CHAMPIONS = ["champion_local", "champion_global"]


def random_weight(num_layers: int, num_experts: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    loads = rng.lognormal(0.0, 1.0, size=(num_layers, num_experts)) * 1000
    return torch.from_numpy(loads).to(dtype)


def check_placement(placement, num_layers: int, num_experts: int, num_replicas: int) -> None:
    """Assert every validity rule of the candidate contract (DESIGN.md)."""
    phy2log, log2phy, logcnt = (tensor.detach().cpu().numpy() for tensor in placement)
    assert phy2log.shape == (num_layers, num_replicas)
    assert log2phy.ndim == 3 and log2phy.shape[:2] == (num_layers, num_experts)
    assert logcnt.shape == (num_layers, num_experts)
    for array in (phy2log, log2phy, logcnt):
        assert np.issubdtype(array.dtype, np.integer)
    assert ((phy2log >= 0) & (phy2log < num_experts)).all()
    assert (logcnt >= 1).all()
    for layer in range(num_layers):
        assert np.array_equal(logcnt[layer], np.bincount(phy2log[layer], minlength=num_experts))
        for expert in range(num_experts):
            count = logcnt[layer, expert]
            slots = log2phy[layer, expert, :count]
            assert len(set(slots.tolist())) == count
            assert ((slots >= 0) & (slots < num_replicas)).all()
            assert (phy2log[layer, slots] == expert).all()
            assert (log2phy[layer, expert, count:] == -1).all()


def test_seed_diff_is_the_shipped_seed():
    search, replace = seed_search_replace()
    assert search.startswith("def replicate_experts(")
    assert replace.startswith("def replicate_experts(")
    assert search != replace


def test_deepseek_reproduces_readme_example(programs):
    weight = torch.from_numpy(README_WEIGHT).long()
    phy2log, log2phy, logcnt = programs["deepseek"].rebalance_experts(weight, 16, 4, 2, 8)
    assert phy2log.tolist() == README_PHY2LOG.tolist()
    assert phy2log.dtype == log2phy.dtype == logcnt.dtype == torch.int64
    assert log2phy.shape == (2, 12, 16 - 12 + 1)
    check_placement((phy2log, log2phy, logcnt), 2, 12, 16)


@pytest.mark.parametrize("program", PROGRAM_NAMES + CHAMPIONS)
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_placement_is_valid(programs, program, shape, dtype):
    num_layers, num_experts, num_replicas, num_groups, num_nodes, num_gpus = SHAPES[shape]
    for seed in (0, 1):
        weight = random_weight(num_layers, num_experts, seed, dtype)
        placement = programs[program].rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
        check_placement(placement, num_layers, num_experts, num_replicas)


@pytest.mark.parametrize("program", PROGRAM_NAMES + CHAMPIONS)
def test_readme_example_is_valid(programs, program):
    placement = programs[program].rebalance_experts(torch.from_numpy(README_WEIGHT).long(), 16, 4, 2, 8)
    check_placement(placement, 2, 12, 16)


@pytest.mark.parametrize("program", [*PROGRAM_NAMES, "champion_local"])
@pytest.mark.parametrize("shape", ["deepseek-v3", "readme", "no-redundant-hierarchical"])
def test_hierarchical_keeps_each_group_on_one_node(programs, program, shape):
    num_layers, num_experts, num_replicas, num_groups, num_nodes, num_gpus = SHAPES[shape]
    weight = random_weight(num_layers, num_experts, 2, torch.float32)
    phy2log, _, _ = programs[program].rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
    phy2log = phy2log.cpu().numpy()
    slot_node = np.arange(num_replicas) // (num_replicas // num_nodes)
    slot_group = phy2log // (num_experts // num_groups)
    for layer in range(num_layers):
        for group in range(num_groups):
            assert len(set(slot_node[slot_group[layer] == group].tolist())) == 1


@pytest.mark.parametrize("program", PROGRAM_NAMES + CHAMPIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64], ids=["f32", "f64", "i64"])
def test_input_is_not_mutated(programs, program, dtype):
    weight = (random_weight(58, 256, 3, torch.float64) * 10).to(dtype)
    before = weight.clone()
    programs[program].rebalance_experts(weight, 288, 8, 4, 32)
    assert torch.equal(weight, before)
    transposed = weight.T.contiguous().T  # same values, column-major strides
    programs[program].rebalance_experts(transposed, 288, 8, 4, 32)
    assert torch.equal(transposed, before)


@pytest.mark.parametrize("program", PROGRAM_NAMES)
def test_ties_go_to_the_lower_index(programs, program):
    rebalance_experts = programs[program].rebalance_experts
    # Hierarchical: groups 0, 2 on node 0 and 1, 3 on node 1; node-local experts 0 and 1
    # get the extra replicas; replicas are packed onto GPUs heaviest first, lower GPU first.
    phy2log, _, logcnt = rebalance_experts(torch.ones(2, 8), 12, 4, 2, 4)
    assert phy2log.tolist() == [[4, 0, 0, 5, 1, 1, 6, 2, 2, 7, 3, 3]] * 2
    assert logcnt.tolist() == [[2, 2, 2, 2, 1, 1, 1, 1]] * 2
    # Global policy (3 groups do not divide over 2 nodes).
    phy2log, _, logcnt = rebalance_experts(torch.full((1, 6), 7.0), 8, 3, 2, 2)
    assert logcnt.tolist() == [[2, 2, 1, 1, 1, 1]]
    phy2log, _, logcnt = rebalance_experts(torch.ones(1, 4), 6, 1, 1, 2)
    assert phy2log.tolist() == [[2, 0, 0, 3, 1, 1]]


@pytest.mark.parametrize("program", PROGRAM_NAMES)
def test_bad_topology_raises_value_error(programs, program):
    with pytest.raises(ValueError, match="GPUs"):
        programs[program].rebalance_experts(torch.ones(2, 8), 12, 4, 2, 5)
    with pytest.raises(ValueError, match="replicas cannot hold"):
        programs[program].rebalance_experts(torch.ones(2, 8), 6, 4, 2, 2)


def test_seed_diff_changes_the_placement(programs):
    # On a skewed (Zipf) load the child's peak-aware tail and second fix-up move give
    # other replica counts than the parent in some layers: the diff hits live code.
    rng = np.random.default_rng(5)
    ranks = np.argsort(rng.random((58, 256)), axis=-1) + 1.0
    weight = torch.from_numpy(ranks ** -1.0 * 1e5).float()
    _, _, parent_logcnt = programs["seed_parent"].rebalance_experts(weight, 288, 8, 4, 32)
    _, _, child_logcnt = programs["seed_child"].rebalance_experts(weight, 288, 8, 4, 32)
    assert (parent_logcnt != child_logcnt).any()


@pytest.mark.parametrize("program", CHAMPIONS)
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_champions_are_deterministic(programs, program, shape):
    num_layers, num_experts, num_replicas, num_groups, num_nodes, num_gpus = SHAPES[shape]
    weight = random_weight(num_layers, num_experts, 4, torch.float32)
    first, again = (programs[program].rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
                    for _ in range(2))
    for one, other in zip(first, again, strict=True):
        assert torch.equal(one, other)
