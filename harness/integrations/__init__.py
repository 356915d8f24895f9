"""Drop-in evaluators for evolutionary search frameworks (docs/integrations.md).

- OpenEvolve: the evaluation file `openevolve_evaluator.py` (`evaluate`,
  `evaluate_stage1`, `evaluate_stage2`), path in `EVALUATION_FILES["openevolve"]`.
- ShinkaEvolve: the script `shinka_evaluate.py` (`--program_path P --results_dir D`),
  path in `EVALUATION_FILES["shinka"]`.

Both run `frameworks.evaluate_program`: the harness's isolated workers on a suite, within
one time budget, every row in the Parquet store. The files are named so that neither
shadows a top-level module when OpenEvolve puts this folder on `sys.path`.

`scaffold.write_search_folder` writes a ready search folder for either framework (the
`integrations shinka --task-dir` / `openevolve --example-dir` commands): a small
evaluation file over these, the starting program, the settings and the commands.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent

EVALUATION_FILES = {
    "openevolve": _HERE / "openevolve_evaluator.py",
    "shinka": _HERE / "shinka_evaluate.py",
}
