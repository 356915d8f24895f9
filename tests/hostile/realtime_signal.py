"""Verdict: crash: died by signal SIGRTMIN+6

Tries: dying by a real-time signal, which has no name in Python's signal enum, so a
naive `signal.Signals(n)` in the harness would raise.
"""

import os
import signal
import time


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    os.kill(os.getpid(), signal.SIGRTMIN + 6)
    time.sleep(10)
