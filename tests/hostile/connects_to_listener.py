"""Verdict: error: Network is unreachable
Flags: confined

Tries: connecting to a listener the test started on 127.0.0.1 (its port is written in
below when the gallery is copied for a run). Confined, the worker's network namespace
has only a loopback that is down: the connection fails at once, and the listener sees
nothing. The error is the candidate's own, as Python raised it.
"""

import socket

PORT = int("@LISTENER_PORT@")


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as connection:
        connection.sendall(b"hello from a candidate\n")
    raise RuntimeError("connected to the listener")
