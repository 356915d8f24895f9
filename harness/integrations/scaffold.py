"""Ready search folders for ShinkaEvolve and OpenEvolve (`eplb-harness integrations shinka
--task-dir DIR`, `eplb-harness integrations openevolve --example-dir DIR`).

A folder holds everything the framework's own command needs, and its README says which
command that is:
- the evaluation file: a few lines that call the installed harness's evaluator with the
  folder's settings (the checkout that wrote it is the fallback when the framework's
  Python lacks the package);
- the starting program (the seed parent unless told otherwise), which must carry
  EVOLVE-BLOCK markers: ShinkaEvolve refuses every edit outside them;
- `eplb.toml`, the harness's settings: the score, the suites, the budget of one
  evaluation and the result store that every search shares;
- the framework's config: its evaluation timeout above the harness's budget (so the
  harness's own timeout result, with its feedback, always arrives first), the task told
  to the model, and what each framework needs besides: ShinkaEvolve's text feedback
  switched on; OpenEvolve's cascade over the two suites, no retries of a failed
  evaluation, and a code length limit above the starting program's.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import harness
from harness.candidates import CANDIDATES_DIR
from harness.errors import HarnessError
from harness.files import write_atomically
from harness.integrations.frameworks import SCORES, IntegrationConfig, search_run_id
from harness.settings import TIMING_PRESETS
from harness.workloads.suites import suite_spec

__all__ = ["FRAMEWORK_MARGIN_S", "SEED_PARENT", "SearchFolder", "write_search_folder"]

SEED_PARENT = CANDIDATES_DIR / "seed_parent.py"
# What a framework's timeout adds to the harness's budget: starting Python and the
# harness, killing a hung worker and writing the answer, on a busy machine.
FRAMEWORK_MARGIN_S = 60
_DEFAULTS = IntegrationConfig()
_ROOT = Path(harness.__file__).resolve().parent.parent
_FILES = {
    "shinka": ("evaluate.py", "initial.py", "eplb.toml", "shinka.yaml", "README.md"),
    "openevolve": ("evaluator.py", "initial_program.py", "eplb.toml", "config.yaml", "README.md"),
}


@dataclass(frozen=True)
class SearchFolder:
    """A written search folder: its files, and the commands its README gives."""

    framework: str
    folder: Path
    files: tuple[Path, ...]
    commands: tuple[str, ...]


@dataclass(frozen=True)
class _Search:
    """What the files of one folder are written from."""

    folder: Path
    initial: str  # the starting program's source
    score: str
    suite: str
    budget_s: float
    results: Path

    @property
    def timeout_s(self) -> int:
        return math.ceil(self.budget_s) + FRAMEWORK_MARGIN_S


def write_search_folder(framework: str, folder: str | Path, *, initial: str | Path | None = None,
                        score: str | None = None, suite: str | None = None, budget_s: float | None = None,
                        results: str | Path | None = None, force: bool = False) -> SearchFolder:
    """Write the search folder of `framework` (`shinka` or `openevolve`) into `folder`,
    created when missing, starting from `initial` (default: the seed parent). Unset
    settings take the integration's defaults; `results` is the store folder (default:
    `results` here). Refuses to overwrite a file unless `force`."""
    score = score or _DEFAULTS.score
    if score not in SCORES:
        raise HarnessError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    budget_s = _DEFAULTS.budget if budget_s is None else budget_s
    if not (budget_s > 0 and math.isfinite(budget_s)):
        raise HarnessError(f"the budget must be a positive number of seconds, not {budget_s:g}")
    folder = Path(folder).resolve()
    search = _Search(folder=folder, initial=_starting_program(Path(initial or SEED_PARENT)), score=score,
                     suite=_suite_setting(suite or _DEFAULTS.suite), budget_s=budget_s,
                     results=Path(results or _DEFAULTS.results).resolve())
    names = _FILES[framework]
    taken = [name for name in names if (folder / name).exists()]
    if taken and not force:
        raise HarnessError(f"{folder} already holds {', '.join(taken)}; choose another folder or give --force "
                           "to overwrite them")
    writers = {"shinka": _shinka_files, "openevolve": _openevolve_files}
    contents, commands = writers[framework](search)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        files = tuple(write_atomically(folder / name, contents[name]) for name in names)
    except OSError as exc:
        raise HarnessError(f"the search folder {folder} cannot be written: {exc.strerror or exc}") from exc
    return SearchFolder(framework=framework, folder=folder, files=files, commands=commands)


def _starting_program(path: Path) -> str:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"the starting program {path} cannot be read: {exc}") from exc
    if "EVOLVE-BLOCK-START" not in source or "EVOLVE-BLOCK-END" not in source:
        raise HarnessError(f"the starting program {path} has no EVOLVE-BLOCK-START/END comment lines around the "
                           "code a search may change; ShinkaEvolve refuses every edit to such a program")
    return source


def _suite_setting(suite: str) -> str:
    """The suite as eplb.toml names it: a shipped suite by name, a spec file by its
    absolute path (eplb.toml's paths are relative to it, not to where this runs)."""
    spec = suite_spec(suite)  # refuses an unknown suite now rather than at every evaluation
    path = Path(suite)
    return str(Path(spec["path"]).resolve()) if path.suffix or "/" in suite or path.is_file() else suite


def _task(search: _Search) -> str:
    """The task as told to the model (ShinkaEvolve's system message, OpenEvolve's)."""
    return (
        "You improve an expert-parallel load balancer (EPLB) for Mixture-of-Experts inference. The program "
        "defines rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus) -> (phy2log, log2phy, "
        "logcnt): weight [layers, experts] is the load of each logical expert; phy2log [layers, num_replicas] "
        "names the logical expert of each physical slot (num_replicas / num_gpus consecutive slots per GPU, "
        "num_gpus / num_nodes GPUs per node), every expert getting at least one slot; logcnt [layers, experts] "
        "counts each expert's slots and log2phy [layers, experts, num_replicas - experts + 1] lists them, padded "
        "with -1; all int64 on the device of weight, which must stay unchanged. Experts come in num_groups "
        "groups; keeping a group's replicas on one node saves traffic. The harness plans on one window of "
        "loads and measures the balance on the next, on several models and load patterns: GPU balancedness "
        "is the mean GPU load over the busiest GPU's load (1.0 is perfect). The call's runtime is measured too. "
        f"combined_score is the {SCORES[search.score][1]}; a program that fails on any workload scores 0. "
        "Keep the code vectorised with torch (no Python loops over layers or experts) and change only the code "
        "between the EVOLVE-BLOCK markers."
    )


def _toml(value: object) -> str:
    """A TOML value; JSON's strings and numbers are TOML's."""
    return json.dumps(value)


def _settings_file(search: _Search, framework: str, run_id: str = "") -> str:
    lines = [
        f"# eplb-harness settings of this search, written by `eplb-harness integrations {framework}`",
        "# (docs/integrations.md, \"Settings\"). Paths are relative to this file.",
        f"score = {_toml(search.score)}  # which figure combined_score is: {', '.join(SCORES)}",
        f"suite = {_toml(search.suite)}  # the workloads a program is scored on",
    ]
    if framework == "openevolve":
        lines.append(f"stage1_suite = {_toml(_DEFAULTS.stage1_suite)}  # cascade stage 1, the quick validity check")
        lines.append(f"stage1_timing = {_toml(_DEFAULTS.stage1_timing)}  # its timing: {', '.join(TIMING_PRESETS)}")
    lines += [
        f"budget = {search.budget_s:g}  # seconds one evaluation may take, all its workloads together",
        f"results = {_toml(str(search.results))}  # the result store every search shares",
    ]
    if run_id:
        lines.append(f"run_id = {_toml(run_id)}  # the stored rows' run id: one per search folder")
    return "\n".join(lines) + "\n"


def _activate() -> str:
    """The line that enters this Python's virtual environment, if it is one."""
    script = Path(sys.prefix) / "bin" / "activate"
    return f"source {script}\n" if sys.prefix != sys.base_prefix and script.is_file() else ""


def _import_fallback(statement: str) -> str:
    return (f"try:\n    {statement}\n"
            "except ImportError:  # this Python lacks the package: use the checkout that wrote this file\n"
            f"    sys.path.insert(0, {str(_ROOT)!r})\n    {statement}\n")


def _shinka_files(search: _Search) -> tuple[dict[str, str], tuple[str, ...]]:
    settings = search.folder / "eplb.toml"
    evaluate = (
        '"""ShinkaEvolve\'s evaluation script for this search, written by `eplb-harness integrations shinka`:\n'
        "the harness's evaluator with the settings in eplb.toml. ShinkaEvolve copies this file into each\n"
        'results folder and runs the copy, so the settings file is named by its full path."""\n\n'
        "import sys\n\n"
        + _import_fallback("from harness.integrations.shinka_evaluate import main")
        + f"\nSETTINGS = {str(settings)!r}\n\n"
        'if __name__ == "__main__":\n'
        '    sys.exit(main(["--config", SETTINGS, *sys.argv[1:]]))\n'
    )
    job_time = f"{search.timeout_s // 3600:02d}:{search.timeout_s // 60 % 60:02d}:{search.timeout_s % 60:02d}"
    config = (
        "# ShinkaEvolve settings of this search (shinka_run --config-fname shinka.yaml), written by\n"
        "# `eplb-harness integrations shinka`; `--set NS.FIELD=VALUE` overrides any of them.\n"
        "evo:\n"
        "  # The harness's feedback (the rule a placement broke, the timeout, the weakest workload)\n"
        "  # reaches the model only with this on; ShinkaEvolve's default is off.\n"
        "  use_text_feedback: true\n"
        f"  task_sys_msg: {json.dumps(_task(search))}\n"
        "job:\n"
        "  # One evaluation's wall-clock limit: above the harness's budget (eplb.toml), so that the\n"
        "  # harness's own timeout result, with its feedback, arrives first.\n"
        f"  time: {json.dumps(job_time)}\n"
        "# One evaluation at a time: the runtime counts, and evaluations side by side slow each other.\n"
        "# Raise it on a machine with cores to spare.\n"
        "max_evaluation_jobs: 1\n"
    )
    run = search.folder / "runs" / "first"
    commands = (
        f"cd {shlex.quote(str(search.folder))}",
        "shinka_run --task-dir . --config-fname shinka.yaml --results_dir runs/first --num_generations 50 "
        "--set evo.llm_models='[\"gpt-5-mini\"]'",
        f"eplb-harness leaderboard --results {shlex.quote(str(search.results))} --run {search_run_id('shinka', run)}",
    )
    readme = (
        "# An EPLB search with ShinkaEvolve\n\n"
        "Written by `eplb-harness integrations shinka`. Every program ShinkaEvolve proposes is scored by "
        "eplb-harness (`evaluate.py`, settings in `eplb.toml`) and stored in the result store "
        f"`{search.results}`.\n\n"
        "```sh\n" + _activate() + "\n".join(commands) + "\n```\n\n"
        "- The model: `evo.llm_models` names any model ShinkaEvolve knows (`gpt-5-mini` needs "
        "`OPENAI_API_KEY`), or an OpenAI-compatible server as `local/MODEL@http://HOST:PORT/v1`. The "
        "novelty check embeds code with `text-embedding-3-small` (`OPENAI_API_KEY`); "
        "`--set evo.embedding_model=null` turns it off.\n"
        "- Each search writes its own results folder (`--results_dir`): its programs are stored as "
        f"`first/gen_N` under the run id `{search_run_id('shinka', run)}` (another results folder, another "
        "run id: each evaluation's `results/metrics.json` names it under `private`), with their parents, so "
        "searches share one store. ShinkaEvolve's own database is `runs/first/programs.sqlite`.\n"
        "- `initial.py` is the starting program; only the code between its EVOLVE-BLOCK markers evolves.\n"
    )
    files = {"evaluate.py": evaluate, "initial.py": search.initial, "eplb.toml": _settings_file(search, "shinka"),
             "shinka.yaml": config, "README.md": readme}
    return files, commands


def _openevolve_files(search: _Search) -> tuple[dict[str, str], tuple[str, ...]]:
    evaluator = (
        '"""OpenEvolve\'s evaluation file for this search, written by `eplb-harness integrations openevolve`:\n'
        "the harness's evaluator with the settings in eplb.toml beside it (cascade stage 1 on the quick\n"
        'suite, stage 2 on the full one)."""\n\n'
        "import sys\nfrom pathlib import Path\n\n"
        + _import_fallback("from harness.integrations import openevolve_evaluator as harness_evaluator")
        + '\nSETTINGS = Path(__file__).resolve().with_name("eplb.toml")\n\n\n'
        "def evaluate(program_path, **options):\n"
        '    return harness_evaluator.evaluate(program_path, **{"config": SETTINGS, **options})\n\n\n'
        "def evaluate_stage1(program_path):\n"
        "    return harness_evaluator.evaluate_stage1(program_path, config=SETTINGS)\n\n\n"
        "def evaluate_stage2(program_path):\n"
        "    return harness_evaluator.evaluate_stage2(program_path, config=SETTINGS)\n"
    )
    config = (
        "# OpenEvolve settings of this search (openevolve-run ... --config config.yaml), written by\n"
        "# `eplb-harness integrations openevolve`.\n"
        "max_iterations: 100\n"
        "checkpoint_interval: 10\n"
        "# OpenEvolve refuses children longer than this (default 10000 characters, less than the\n"
        "# starting program).\n"
        f"max_code_length: {max(4 * len(search.initial), 20000)}\n"
        "llm:\n"
        "  # Any OpenAI-compatible endpoint; the key comes from OPENAI_API_KEY. openevolve-run's\n"
        "  # --api-base URL --primary-model NAME override both (give both: OpenEvolve applies the\n"
        "  # endpoint only when it rebuilds the model list).\n"
        '  api_base: "https://api.openai.com/v1"\n'
        '  primary_model: "gpt-5-mini"\n'
        "prompt:\n"
        f"  system_message: {json.dumps(_task(search))}\n"
        "evaluator:\n"
        "  # Above the harness's budget (eplb.toml), so that the harness's own timeout result, with\n"
        "  # its feedback, arrives first: OpenEvolve's cannot stop a hung call.\n"
        f"  timeout: {search.timeout_s}\n"
        "  max_retries: 0  # a failed candidate is a result, not a flaky evaluation\n"
        "  cascade_evaluation: true  # stage 1: the quick suite; stage 2: the suite in eplb.toml\n"
        "  cascade_thresholds: [0.000001]  # a failure scores exactly 0, so stage 2 runs for valid programs\n"
        "  # One evaluation at a time: the runtime counts, and evaluations side by side slow each other.\n"
        "  parallel_evaluations: 1\n"
    )
    commands = (
        f"cd {shlex.quote(str(search.folder))}",
        "export OPENAI_API_KEY=...",
        "openevolve-run initial_program.py evaluator.py --config config.yaml --iterations 100",
        f"eplb-harness leaderboard --results {shlex.quote(str(search.results))} "
        f"--run {search_run_id('openevolve', search.folder)}",
    )
    readme = (
        "# An EPLB search with OpenEvolve\n\n"
        "Written by `eplb-harness integrations openevolve`. Every program OpenEvolve proposes is scored by "
        "eplb-harness (`evaluator.py`, settings in `eplb.toml`) and stored in the result store "
        f"`{search.results}`.\n\n"
        "```sh\n" + _activate() + "\n".join(commands) + "\n```\n\n"
        "- The model: `llm` in `config.yaml`, or `--api-base URL --primary-model NAME` (both together) for "
        "any OpenAI-compatible server.\n"
        f"- The rows of this folder's searches carry the run id `{search_run_id('openevolve', search.folder)}` "
        "(`eplb.toml`); "
        "each child is named by its OpenEvolve program id and carries its parent's source hash. "
        "OpenEvolve's own database is saved under `openevolve_output/checkpoints/`. For a second search "
        "with its own run id, write another folder.\n"
        "- `initial_program.py` is the starting program; only the code between its EVOLVE-BLOCK markers "
        "should change.\n"
    )
    files = {"evaluator.py": evaluator, "initial_program.py": search.initial,
             "eplb.toml": _settings_file(search, "openevolve", run_id=search_run_id("openevolve", search.folder)),
             "config.yaml": config, "README.md": readme}
    return files, commands
