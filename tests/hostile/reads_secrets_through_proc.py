"""Verdict: error: no secret reachable through /proc
Flags: confined

Tries: going around its own folder through other processes of the same user, as /proc
shows them: each one's environment (`/proc/PID/environ`: the harness's own holds the
user's variables) and the secret file under each one's root (`/proc/PID/root`, a way
into the host's files past any mount). In its own PID namespace the worker's /proc
lists only its own processes.
"""

import os

SECRET_FILE = "@SECRET_FILE@"
SECRET_VARIABLE = b"EPLB_TEST_SECRET="


def _found():
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as file:
                for entry in file.read().split(b"\0"):
                    if entry.startswith(SECRET_VARIABLE):
                        return entry.decode()
        except OSError:
            pass
        try:
            with open(f"/proc/{name}/root{SECRET_FILE}") as file:
                return file.read()
        except OSError:
            pass
    return None


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    secret = _found()
    if secret:
        print(secret, flush=True)
        raise RuntimeError(f"found {secret}")
    raise RuntimeError("no secret reachable through /proc")
