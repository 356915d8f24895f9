"""Verdict: error: No such file or directory
Flags: confined

Tries: reading a secret file the test put in the home folder of the user who runs the
harness, and showing it everywhere a row keeps text (stdout, stderr, the error). The
home folder is an empty folder inside the worker's namespaces: the file is not there.
"""

import sys

SECRET_FILE = "@SECRET_FILE@"


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    with open(SECRET_FILE) as file:
        secret = file.read()
    print(secret, flush=True)
    print(secret, file=sys.stderr, flush=True)
    raise RuntimeError(f"the secret is {secret}")
