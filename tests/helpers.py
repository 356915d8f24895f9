"""Helpers shared by the tests that drive the command line and watch processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
