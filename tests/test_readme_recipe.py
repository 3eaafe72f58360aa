"""The README's many-machine recipe, run as written: a job array of three tasks on one PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import tomllib
from optuna.trial import TrialState
from test_sweep import POINTS, write_spec
from test_sweep_backends import load

from autoprumux.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def recipe() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- many-machine recipe.*?-->\n```bash\n(.*?)```\n<!-- end of recipe -->", text, re.S)
    assert match, "the README lost its many-machine recipe"
    return match.group(1)


def test_the_recipe_installs_the_extra_that_exists():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "pip install 'autoprumux[postgres]'" in recipe()
    assert any(dep.startswith("psycopg") for dep in extras["postgres"])
    import psycopg  # noqa: F401  (make test installs the extra)


def test_the_recipe_runs_a_sweep_on_three_machines(postgres, tmp_path):
    spec_path = write_spec(tmp_path, "array")
    script = tmp_path / "task.sh"
    # `pip install` is what `make test` already did; everything else runs as written.
    script.write_text("set -e\npip() { :; }\n" + recipe())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    url = postgres.new_database()
    tasks = []
    for task_id in ("1", "2", "0"):  # the workers are up before the sweep exists
        # the recipe's DB and SPEC point at this test's database and tiny spec; the rest runs as written
        task_script = tmp_path / f"task{task_id}.sh"
        task_script.write_text(script.read_text()
                               .replace("export DB=postgresql://user:pw@dbhost:5432/autoprumux", f"export DB={url}")
                               .replace("export SPEC=sweeps/glue-sst2-bert-base.toml", f"export SPEC={spec_path}"))
        tasks.append(subprocess.Popen(["bash", str(task_script)], env={**env, "SLURM_ARRAY_TASK_ID": task_id},
                                      cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [task.communicate(timeout=600)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0, 0], outputs
    spec = dataclasses.replace(load_spec(spec_path), storage=url)
    study = load(spec)
    done = [(t.params["mux"], t.params["sparsity"]) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(done) == sorted(POINTS)  # every point once
    assert "done 4, running 0, waiting 0, failed 0" in outputs[2]  # the status line of task 0
    assert len({t.user_attrs["worker"] for t in study.trials}) >= 2  # more than one task trained
