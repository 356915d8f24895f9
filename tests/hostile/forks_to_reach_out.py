"""Verdict: ok
Flags: confined

Tries: forking a child that does what its parent may not: read the secret file in the
user's home folder, connect to the test's listener on 127.0.0.1, write into the folder
outside the work folder. The child is as confined as its parent: each attempt fails,
the child prints how, and the candidate itself returns a valid placement.
"""

import os
import socket

import torch

SECRET_FILE = "@SECRET_FILE@"
PORT = int("@LISTENER_PORT@")
FOLDER = "@OUTSIDE_FOLDER@"


def _placement(phy2log, num_experts):
    """logcnt and log2phy that tell the truth about phy2log [layers, replicas]."""
    num_layers, num_replicas = phy2log.shape
    logcnt = torch.zeros(num_layers, num_experts, dtype=torch.int64)
    logcnt.scatter_add_(1, phy2log, torch.ones_like(phy2log))
    log2phy = torch.full((num_layers, num_experts, int(logcnt.max())), -1, dtype=torch.int64)
    for layer in range(num_layers):
        seen = [0] * num_experts
        for slot, expert in enumerate(phy2log[layer].tolist()):
            log2phy[layer, expert, seen[expert]] = slot
            seen[expert] += 1
    return phy2log, log2phy, logcnt


def _round_robin(weight, num_replicas):
    """A valid placement: slot p holds expert p % experts."""
    num_layers, num_experts = weight.shape
    phy2log = (torch.arange(num_replicas) % num_experts).repeat(num_layers, 1)
    return _placement(phy2log, num_experts)


def _attempt(name, action):
    try:
        return f"{name}: done {action()!r}"
    except OSError as exc:
        return f"{name}: refused ({exc.strerror})"


def _reach_out():
    def read():
        with open(SECRET_FILE) as file:
            return file.read()

    def connect():
        with socket.create_connection(("127.0.0.1", PORT), timeout=10):
            return "connected"

    def write():
        with open(os.path.join(FOLDER, "written-by-a-child.txt"), "w") as file:
            return file.write("a candidate's child was here\n")

    return [_attempt(name, action) for name, action in (("read", read), ("connect", connect), ("write", write))]


done = []


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    if not done:
        done.append(True)
        reading, writing = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(writing, "\n".join(_reach_out()).encode())
            os._exit(0)
        os.close(writing)
        os.waitpid(pid, 0)
        with os.fdopen(reading) as report:
            for line in report.read().splitlines():
                print(f"child {line}", flush=True)
    return _round_robin(weight, num_replicas)
