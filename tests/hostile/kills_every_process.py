"""Verdict: error: still here after kill(-1)
Flags: confined

Tries: `kill(-1, SIGKILL)`, which ends every process the caller may signal: all the
user's processes, the harness included, when nothing confines the candidate. In its own
PID namespace it reaches only the candidate's own processes (here a `sleep` it started;
never the namespace's init), so the harness and the other evaluations run on. It tries
only where its parent is outside its PID namespace (getppid() is 0), so that it harms
nothing where it is not confined.
"""

import os
import signal
import subprocess


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    if os.getppid() == 0:
        child = subprocess.Popen(["sleep", "1002"])
        os.kill(-1, signal.SIGKILL)
        child.wait()
    raise RuntimeError("still here after kill(-1)")
