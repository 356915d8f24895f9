"""What several test modules share: the DeepSeek README example, store rows built
directly (no candidate runs), the command line as a user runs it, and a look at live
processes."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from harness.results import EvalResult
from harness.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
# A valid placement in microseconds (tests/data/round_robin.py); add a comment to make a
# distinct candidate of it.
ROUND_ROBIN = (Path(__file__).resolve().parent / "data" / "round_robin.py").read_text()

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


# Store rows for the report, store, query and HTML tests.
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_BLANK = {"str": "", "int": 0, "float": float("nan"), "bool": False}


def row(candidate: str = "a", workload: str = "w0", bal: float = 0.9, runtime: float = 0.01, *, status: str = "ok",
        minutes: int = 0, parent: str = "", diff: str = "", **overrides) -> EvalResult:
    """A stored row with every field filled (whatever fields the schema grows)."""
    values = {f.name: _BLANK.get(f.type, T0) for f in dataclasses.fields(EvalResult)
              if f.default is dataclasses.MISSING}
    ok = status == "ok"
    values.update(
        run_id="r1", suite="s1", candidate_name=candidate, candidate_hash=f"h{candidate}", parent_hash=parent,
        diff_name=diff, workload_id=f"{workload}@0123", workload_name=workload, workload_kind="synthetic",
        num_layers=3, num_logical_experts=8, num_replicas=8, num_groups=2, num_nodes=1, num_gpus=4,
        device="cpu", settings_hash="s", created_at=T0 + timedelta(minutes=minutes), status=status,
        error="" if ok else "ValueError: boom",
        balancedness=bal if ok else math.nan, replica_balancedness=bal - 0.1 if ok else math.nan,
        node_balancedness=1.0 if ok else math.nan, group_spread=1.0 if ok else math.nan,
        fit_balancedness=bal + 0.01 if ok else math.nan, moved_replicas_per_plan=2.0 if ok else math.nan,
        runtime_s=runtime if ok else math.nan,
    )
    values.update(overrides)
    values = {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(EvalResult)}}
    if ok and "gpu_max_over_mean_per_layer" not in overrides:
        values["gpu_max_over_mean_per_layer"] = (1 / bal, 1 / bal + 0.05, 1 / bal - 0.02)
    return EvalResult(**values)


def store_of(tmp_path: Path, rows: list[EvalResult], name: str = "store") -> ResultStore:
    store = ResultStore(tmp_path / name)
    store.append(rows)
    return store


def suite_rows() -> list[EvalResult]:
    """A reference, a faster and better parent, its child by a diff, and a broken child."""
    rows = []
    for i, w in enumerate(("w0", "w1", "w2")):
        rows.append(row("deepseek_eplb", w, 0.80 + 0.01 * i, 0.020))
        rows.append(row("par", w, 0.85 + 0.01 * i, 0.010))
        rows.append(row("kid", w, 0.90 + 0.02 * i, 0.040, parent="hpar", diff="kid.diff"))
        rows.append(row("bad", w, status="error" if i == 0 else "ok", parent="hpar", diff="bad.diff"))
    return rows




# The framework loops (tests/test_frameworks_*.py): a one-workload suite, and a stand-in for
# the LLM endpoint that answers with fixed SEARCH/REPLACE diffs against the seed parent.
TINY_SUITE = {"name": "tiny", "version": 1, "workloads": [
    {"name": "tiny-v2lite-zipf", "family": "zipf", "preset": "deepseek-v2-lite", "seed": 5, "num_windows": 2,
     "params": {"exponent": 0.8, "drift": 0.1}}]}


def _reply(name: str, search: str, replace: str) -> str:
    return (f"<NAME>\n{name}\n</NAME>\n<DESCRIPTION>\n{name.replace('_', ' ')}\n</DESCRIPTION>\n"
            f"<DIFF>\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n</DIFF>\n")


# Each applies to the seed parent and to every child of these three, so the replies come
# out in order whichever parent a framework picks: the first, to the only program there
# is, gives a valid child that improves nothing; then an invalid one; then one that hangs.
RETURN_LINE = "    return phy2log, log2phy, logcnt\n"
STANDIN_REPLIES = (
    _reply("same_swap_rounds", "NUM_SWAP_ROUNDS = 4\n", "NUM_SWAP_ROUNDS = 4  # tried, no better\n"),
    _reply("one_replica_each", RETURN_LINE, "    logcnt = torch.ones_like(logcnt)\n" + RETURN_LINE),
    _reply("wait_for_more_load", RETURN_LINE, '    __import__("time").sleep(3600)\n' + RETURN_LINE),
)
STANDIN_STATUSES = ("ok", "invalid", "timeout")  # what the harness makes of each reply's child


class ChatStandIn:
    """A local OpenAI-compatible endpoint (`POST .../chat/completions`) in a thread: each
    request gets the next of `replies`, cycling; `prompts` keeps each request's messages
    joined. Use as a context manager; `url` is the base URL a client is given."""

    def __init__(self, replies: tuple[str, ...]) -> None:
        import itertools
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.prompts: list[str] = []
        lock, cycle, prompts = threading.Lock(), itertools.cycle(replies), self.prompts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    reply = next(cycle)
                    prompts.append("\n".join(str(m.get("content", "")) for m in request.get("messages", [])))
                body = json.dumps({
                    "id": f"standin-{len(prompts)}", "object": "chat.completion", "created": 0,
                    "model": request.get("model", "standin"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ChatStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def search_folder(tmp_path: Path, framework: str, budget_s: float) -> tuple[Path, Path, Path]:
    """A search folder as `eplb-harness integrations FRAMEWORK` writes it, on `TINY_SUITE`:
    (the folder, its result store, an empty scratch folder for the search's HOME and TMPDIR)."""
    suite, store, folder = tmp_path / "tiny.json", tmp_path / "store", tmp_path / framework
    suite.write_text(json.dumps(TINY_SUITE))
    option = "--task-dir" if framework == "shinka" else "--example-dir"
    written = cli("integrations", framework, option, str(folder), "--suite", str(suite), "--budget", str(budget_s),
                  "--results", str(store))
    assert written.returncode == 0, written.stderr
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return folder, store, scratch


def search_environment(scratch: Path, **extra: str) -> dict[str, str]:
    """The search's environment: no harness settings of ours, and HOME and TMPDIR in
    `scratch`, which every process of the search (the harness's workers included) inherits."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EPLB_HARNESS_")}
    env.update(HOME=str(scratch), TMPDIR=str(scratch), **extra)
    return env
