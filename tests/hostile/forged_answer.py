"""Verdict: invalid: answer: answer.json is not valid JSON

Tries: writing the worker's answer file itself (garbage) and leaving before the worker
can. The parent must read it as hostile input, not crash on it.
"""

import os


with open("answer.json", "w") as answer:
    answer.write('{"status": "ok", "runtime_samples_s": [')
os._exit(0)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
