"""Summing load steps into windows, the one convention every file reader follows.

Steps are summed into windows of `window_steps` consecutive steps; a last, shorter window
is kept (the ADRS evaluator does the same) and noted; a window larger than the whole
trace is an error. `routing_counts` does the same for per-token routing decisions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.workloads.model import DEFAULT_WINDOW_STEPS

__all__ = ["WindowSum", "check_window_steps", "partial_note", "routing_counts", "steps_to_windows", "too_few_steps"]


def check_window_steps(window_steps: int) -> int:
    """`window_steps` as an int, or a HarnessError unless it is a positive integer."""
    if isinstance(window_steps, bool) or not isinstance(window_steps, (int, np.integer)) or window_steps < 1:
        raise HarnessError(f"window size must be a positive number of steps; got {window_steps!r}")
    return int(window_steps)


def too_few_steps(path: Path, steps: int, window_steps: int) -> HarnessError:
    """The error for a window of more steps than the trace at `path` holds."""
    return HarnessError(
        f"window of {window_steps} steps is larger than the trace {path} ({steps} steps); "
        f"use --window-steps {steps} or less"
    )


def steps_to_windows(steps: np.ndarray, window_steps: int, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Sum [steps, layers, experts] into windows of window_steps consecutive steps."""
    count = steps.shape[0]
    if window_steps > count:
        raise too_few_steps(path, count, window_steps)
    starts = np.arange(0, count, window_steps)
    windows = np.add.reduceat(np.asarray(steps, dtype=np.float64), starts, axis=0)
    return windows, partial_note(count, window_steps)


def partial_note(count: int, window_steps: int) -> tuple[str, ...]:
    """The note saying how `count` steps were summed into windows (and the last one's size)."""
    rest = count % window_steps
    note = f"{count} steps summed into windows of {window_steps}"
    if rest:
        note += f"; the last window has {rest} step{'s' if rest > 1 else ''}"
    return (note,)


class WindowSum:
    """Accumulates [layers, experts] steps into windows of `window_steps` steps."""

    def __init__(self, path: Path, window_steps: int) -> None:
        self.path, self.window_steps = path, window_steps
        self.windows: list[np.ndarray] = []
        self.current: np.ndarray | None = None
        self.in_current = 0
        self.steps = 0

    def add(self, step: np.ndarray) -> None:
        if self.current is None:
            if self.windows and step.shape != self.windows[0].shape:
                raise HarnessError(f"{self.path}: step {self.steps} has shape {list(step.shape)}, "
                                   f"the steps before it {list(self.windows[0].shape)}")
            self.current = step.copy()
        elif step.shape != self.current.shape:
            raise HarnessError(f"{self.path}: step {self.steps} has shape {list(step.shape)}, "
                               f"the steps before it {list(self.current.shape)}")
        else:
            self.current += step
        self.steps += 1
        self.in_current += 1
        if self.in_current == self.window_steps:
            self.windows.append(self.current)
            self.current, self.in_current = None, 0

    def result(self) -> tuple[np.ndarray, tuple[str, ...]]:
        if self.steps == 0:
            raise HarnessError(f"{self.path} holds no steps")
        if self.window_steps > self.steps:
            raise too_few_steps(self.path, self.steps, self.window_steps)
        if self.current is not None:
            self.windows.append(self.current)
        return np.stack(self.windows), partial_note(self.steps, self.window_steps)


def routing_counts(expert_id: np.ndarray, step: np.ndarray | None = None, num_experts: int | None = None,
                   window_steps: int = DEFAULT_WINDOW_STEPS, path: Path | str = "routing trace"
                   ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Aggregate a per-token routing trace into loads [windows, layers, experts].

    expert_id: [tokens, layers] or [tokens, layers, top_k], the expert each token chose
      at each MoE layer (negative ids are padding and are skipped);
    step: [tokens], the engine step of each token (0 = prefill, k = k-th decode step);
      without it every token is its own step, so windows are `window_steps` tokens;
    window_steps: steps per window, counted from the first step.
    """
    path = Path(path)
    ids = np.asarray(expert_id)
    if ids.ndim == 2:
        ids = ids[:, :, None]
    if ids.ndim != 3 or ids.shape[0] == 0 or ids.dtype.kind not in "iu":
        raise HarnessError(f"{path}: expert_id must be integer [tokens, layers(, top_k)]; got "
                           f"{ids.dtype} {list(ids.shape)}")
    tokens, layers, _ = ids.shape
    if step is None:
        steps = np.arange(tokens)
        unit = "tokens"
    else:
        steps = np.asarray(step).astype(np.int64, copy=False)
        if steps.shape != (tokens,):
            raise HarnessError(f"{path}: step has shape {list(steps.shape)}; expected [{tokens}]")
        unit = "steps"
    first = int(steps.min())
    span = int(steps.max()) - first + 1
    if window_steps > span:
        raise HarnessError(f"window of {window_steps} {unit} is larger than the trace {path} ({span} {unit}); "
                           f"use --window-steps {span} or less")
    experts = int(num_experts) if num_experts is not None else int(ids.max()) + 1
    if ids.max() >= experts:
        raise HarnessError(f"{path}: expert ids reach {int(ids.max())} but the model has {experts} experts")
    num_windows = -(-span // window_steps)
    window = (steps - first) // window_steps
    valid = ids >= 0
    flat = ((window[:, None, None] * layers + np.arange(layers)[None, :, None]) * experts + ids.astype(np.int64))
    counts = np.bincount(flat[valid], minlength=num_windows * layers * experts).astype(np.float64)
    notes = (f"{tokens} tokens over {span} {unit} counted in windows of {window_steps} {unit}"
             + (f"; the last window has {span % window_steps} {unit if span % window_steps > 1 else unit[:-1]}"
                if span % window_steps else ""),)
    return counts.reshape(num_windows, layers, experts), notes
