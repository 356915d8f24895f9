"""Verdict: timeout: no answer within

Tries: a deadlock inside rebalance_experts (waiting on an event nobody sets), with
SIGTERM ignored. The wall-clock timeout must kill it.
"""

import signal
import threading


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Event().wait()
