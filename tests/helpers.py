"""What several test modules share: the DeepSeek README example, the command line as a
user runs it, and a look at live processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# The example of DeepSeek's EPLB README: 2 layers x 12 experts on 16 replicas / 4 groups /
# 2 nodes / 8 GPUs, and the phy2log its hierarchical policy gives.
README_WEIGHT = np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                          [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]], dtype=float)
README_PHY2LOG = np.array([[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                           [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]])
README_TOPOLOGY = {"num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}
# The same topology as command-line options.
README_TOPOLOGY_ARGS = [arg for key, value in README_TOPOLOGY.items()
                        for arg in (f"--{key.replace('_', '-')}", str(value))]


def cli_command() -> list[str]:
    """`eplb-harness` as installed beside this interpreter, else `python -m harness`."""
    script = Path(sys.executable).parent / "eplb-harness"
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness"]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the command line to completion, as a user would, capturing its output."""
    return subprocess.run([*cli_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def live_processes_with(marker: bytes) -> list[int]:
    """Pids of processes (zombies excluded) whose environment contains `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.append(int(name))
    return found
