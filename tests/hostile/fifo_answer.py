"""Verdict: invalid: answer: answer.json is not a regular file

Tries: making answer.json a FIFO with no writer, so a parent that simply opens it
blocks forever.
"""

import os


os.mkfifo("answer.json")
os._exit(0)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
