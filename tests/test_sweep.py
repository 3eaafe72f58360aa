"""The sweep engine on tiny CPU specs: a grid completes once, resumes, survives a killed worker."""

import json
import multiprocessing
import os
import signal
import time
from collections import Counter

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from autoprumux.cli import main
from autoprumux.errors import SpecError, StorageError
from autoprumux.spec import load_spec
from autoprumux.sweep.engine import (
    LocalWorker,
    _local_worker_main,
    format_status,
    local_workers,
    open_dashboard,
    prepare_sweep,
    run_sweep,
    run_worker,
    sweep_status,
)
from autoprumux.sweep.plan import plan_sweep
from autoprumux.sweep.store import stage_counts
from autoprumux.sweep.study import claim_next_trial
from autoprumux.table import read_table

POINTS = {(1, 0.0), (2, 0.0), (1, 0.5), (2, 0.5)}  # the 2x2 grid; it contains the baseline (1, 0)

TINY = """
name = "{name}"
task = "synthetic-sentiment"
model = "tiny"
results_dir = "{results}"

[grid]
mux = [1, 2]
sparsity = [0.0, 0.5]

[data]
train_size = 200
eval_size = 100
max_seq_len = 16

[warmup]
epochs = 1
batch_size = 16

[finetune]
epochs = 1
batch_size = 16
learning_rate = 1e-3

[prune]
epochs = 1
batch_size = 16
lagrangian_warmup_epochs = 0.5

[post_finetune]
epochs = 1
batch_size = 16

[bench]
batch_size = 8
seq_len = 16
warmup = 1
repeats = 2

[workers]
heartbeat_interval = 1
grace_period = 2
max_retries = 2
"""


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def write_spec(tmp_path, name="t", extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(name=name, results=tmp_path / name) + extra)
    return path


def completed_points(study):
    return Counter(
        (t.params["mux"], t.params["sparsity"]) for t in study.get_trials(states=(TrialState.COMPLETE,))
    )


def load_study(spec):
    return optuna.load_study(study_name=spec.name, storage=spec.storage_url)


# ---------------------------------------------------------------------------------------------
# claiming


# ---------------------------------------------------------------------------------------------
# whole sweeps


def test_sweep_completes_resumes_and_never_reruns(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    from autoprumux.train.pipeline import train_configuration

    def stop_at(point, exc):
        def pipeline(settings, mux, sparsity, out_dir, **kwargs):
            if (mux, sparsity) == point:
                raise exc
            return train_configuration(settings, mux, sparsity, out_dir, **kwargs)

        return pipeline

    # 1. Ctrl-C during (2, 0.5) (claimed after both s = 0 points, the widest N first): the study
    #    stays consistent and the point is queued again.
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, pipeline=stop_at((2, 0.5), KeyboardInterrupt()))
    study = load_study(spec)
    assert completed_points(study) == Counter({(1, 0.0): 1, (2, 0.0): 1})
    first_numbers = {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert not study.get_trials(states=(TrialState.RUNNING,))
    table = pd.read_csv(spec.table_path)
    assert set(table.status) == {"COMPLETE", "WAITING"}

    # 2. Resume; (1, 0.5) fails with an error that the table keeps.
    summary = run_sweep(spec, pipeline=stop_at((1, 0.5), RuntimeError("boom")))
    assert (summary.status.done, summary.status.failed) == (3, 1)
    table = pd.read_csv(spec.table_path)
    failed = table[table.status == "FAIL"]
    assert list(zip(failed.mux, failed.sparsity_target, strict=True)) == [(1, 0.5)]
    assert "RuntimeError: boom" in failed.error.iloc[0]

    # 3. Resume with the real pipeline: only the failed point runs.
    summary = run_sweep(spec)
    study = load_study(spec)
    assert completed_points(study) == Counter(dict.fromkeys(POINTS, 1))
    assert first_numbers <= {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    table = read_table(spec.table_path)
    assert len(table) == 4 and set(zip(table.mux, table.sparsity_target, strict=True)) == POINTS
    assert set(table.status) == {"COMPLETE"} and table.error.isna().all()
    assert table.accuracy.between(0, 1).all() and (table.throughput > 0).all()
    assert (table.eval_examples == 100).all()
    assert (table.sweep == "t").all() and (table.model == "tiny").all()
    assert table.loc[table.sparsity_target == 0.5, "sparsity"].gt(0).all()
    assert table.loc[table.mux == 1].family.tolist() == ["baseline", "prune-only"]

    # Every stage was trained once; the shared ones were reused instead of retrained.
    plan = plan_sweep(spec)
    counts = stage_counts(spec.artifacts_path)
    assert counts.builds_per_key == dict.fromkeys(plan.unique_stages, 1)
    assert counts.reused == plan.stage_runs_without_reuse - len(plan.unique_stages)

    # 4. Nothing left: running again queues and trains nothing.
    summary = run_sweep(spec)
    assert summary.queued == 0 and len(load_study(spec).trials) == len(study.trials)
    assert stage_counts(spec.artifacts_path).built == counts.built
    assert "done 4, running 0, waiting 0, failed 0" in format_status(sweep_status(spec))

    # The table's README says how it was produced, from the measured rows.
    readme = (spec.results_path / "README.md").read_text()
    assert f"autoprumux sweep {spec.source}" in readme and table.code_version.iloc[0] in readme
    assert table.hardware.iloc[0] in readme and "grid points done: 4 of 4" in readme
    assert f"{counts.built} trained, {counts.reused} reused" in readme
    summary_rows = [line for line in readme.splitlines() if line.startswith("| 2 | 0.50 |")]
    measured = table[(table.mux == 2) & (table.sparsity_target == 0.5)].iloc[0]
    assert len(summary_rows) == 1 and f"{measured.accuracy:.4f}" in summary_rows[0]
    assert "measured at the end of each trial" in readme and table.throughput_at_trial.isna().all()

    # 5. Re-measure side by side: new throughputs, the trial's own kept, and they survive a resume.
    assert main(["sweep", str(spec.source), "--remeasure", "--rounds", "2"]) == 0
    again = read_table(spec.table_path)
    record = json.loads((spec.results_path / "remeasured.json").read_text())
    assert record["rounds"] == 2 and len(record["checkpoints"]) == 4
    for row in again.itertuples():
        figures = record["checkpoints"][row.checkpoint]
        assert len(figures["rounds"]) == 2 and row.throughput == pytest.approx(figures["throughput"])
        assert row.throughput_busy == figures["throughput_busy"] in (0, 1)  # the flag of the figure shown
    assert again.throughput_at_trial.tolist() == pytest.approx(table.throughput.tolist())
    assert again.accuracy.tolist() == table.accuracy.tolist()
    assert "--remeasure --rounds 2" in (spec.results_path / "README.md").read_text()
    run_sweep(spec)
    assert read_table(spec.table_path).throughput.tolist() == pytest.approx(again.throughput.tolist())


def test_a_repeat_trains_a_grid_point_again_with_the_next_seed_once(tmp_path, capsys):
    spec_path = write_spec(tmp_path, "rep")
    spec = load_spec(spec_path)
    # a point outside the grid: one line, exit 2, nothing created or queued
    assert main(["sweep", str(spec_path), "--repeat", "4,0.5"]) == 2
    assert "--repeat 4,0.5 is not a point of the grid" in capsys.readouterr().err
    assert not sweep_status(spec).started
    run_sweep(spec)
    built = stage_counts(spec.artifacts_path).built
    # (2, 0.5) once more: its trial trains every stage again with seed 1 (the spec's 0 + 1)
    assert main(["sweep", str(spec_path), "--repeat", "2,0.5"]) == 0
    table = read_table(spec.table_path)
    assert len(table) == 5 and set(table.status) == {"COMPLETE"}
    repeat = table[(table.mux == 2) & (table.sparsity_target == 0.5)].sort_values("seed")
    assert repeat.seed.tolist() == [0, 1] and repeat.checkpoint.nunique() == 2
    chain = next(t.stages for t in plan_sweep(spec).trials if (t.mux, t.sparsity) == (2, 0.5))
    assert stage_counts(spec.artifacts_path).built - built == len(chain)
    assert "5 grid points (1 of them a repeat" in format_status(sweep_status(spec))
    readme = (spec.results_path / "README.md").read_text()
    assert f"repeats (another seed of a grid point): 1, run by `autoprumux sweep {spec_path} --repeat 2,0.5`" in readme
    assert len([line for line in readme.splitlines() if line.startswith("| 2 | 0.50 | ")]) == 2  # a seed column
    # resuming queues nothing; asking again queues the next seed
    assert run_sweep(spec).queued == 0 and len(load_study(spec).trials) == 5
    study, _, queued = prepare_sweep(spec, ((2, 0.5), (1, 0.0)))
    assert queued == [(2, 0.5, 2), (1, 0.0, 1)]
    # the performance models see the point twice, its mean measured once (one dev set)
    from autoprumux.meta.results import load_results

    configs = load_results(spec.table_path).configurations.set_index(["mux", "sparsity"])
    assert configs.loc[(2, 0.5), "repeats"] == 2 and configs.loc[(1, 0.5), "repeats"] == 1


def test_two_workers_complete_the_grid_without_duplicates(tmp_path):
    spec = load_spec(write_spec(tmp_path, "two"))
    summary = run_sweep(spec, workers=2)
    assert summary.worker_exit_codes == (0, 0)
    study = load_study(spec)
    assert len(study.trials) == 4
    assert completed_points(study) == Counter(dict.fromkeys(POINTS, 1))
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2  # both took part
    assert set(stage_counts(spec.artifacts_path).builds_per_key.values()) == {1}
    assert len(read_table(spec.table_path)) == 4


def test_killed_worker_trial_is_retried_and_each_point_done_once(tmp_path):
    spec = load_spec(write_spec(tmp_path, "kill"))
    prepare_sweep(spec)
    context = multiprocessing.get_context("spawn")
    victim = context.Process(target=_local_worker_main, args=(spec, LocalWorker(0, "cpu", {}, 1), None))
    victim.start()
    locks = spec.artifacts_path / ".locks"
    deadline = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.iterdir())):  # a stage is being trained
        assert time.monotonic() < deadline and victim.is_alive()
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    study = load_study(spec)
    (killed,) = study.get_trials(states=(TrialState.RUNNING,))

    report = run_worker(spec)  # waits for the heartbeat to go stale, then runs the retry too
    assert report.completed == 4
    study = load_study(spec)
    assert study.trials[killed.number].state == TrialState.FAIL
    assert completed_points(study) == Counter(dict.fromkeys(POINTS, 1))
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    counts = stage_counts(spec.artifacts_path)
    assert set(counts.builds_per_key.values()) == {1}
    table = read_table(spec.table_path)
    assert len(table) == 4 and set(table.status) == {"COMPLETE"}
    row = table[(table.mux == killed.params["mux"]) & (table.sparsity_target == killed.params["sparsity"])]
    assert row.retry_of.tolist() == [killed.number]


# ---------------------------------------------------------------------------------------------
# errors, status, dashboard, placement


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("mux = [1, 2]", "mux = [0, 2]", "grid.mux[0] = 0 is invalid"),
        ('model = "tiny"', 'model = "tiny"\ncolour = "red"', "unknown key colour"),
        ("[grid]", "[grid]\n[grid]", "is not valid TOML"),
        ("grace_period = 2", "grace_period = 1", "workers.grace_period = 1 is invalid"),
    ],
)
def test_malformed_spec_is_one_line_error(tmp_path, capsys, old, new, needle):
    path = write_spec(tmp_path, "bad")
    path.write_text(path.read_text().replace(old, new, 1))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autoprumux: error:") and needle in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://nobody:secret@127.0.0.1:1/x", "postgresql://nobody:***@127.0.0.1:1/x"),
        ("sqlite:////dev/null/study.db", "sqlite:////dev/null/study.db"),
        ("nonsense", "expected an Optuna storage URL"),
    ],
)
def test_unreachable_storage_is_one_line_error(tmp_path, capsys, url, needle):
    spec = write_spec(tmp_path)
    assert main(["sweep", str(spec), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autoprumux: error:") and needle in err and err.count("\n") == 1
    assert "secret" not in err


def test_remeasure_needs_a_started_sweep(tmp_path, capsys):
    spec = load_spec(write_spec(tmp_path, "fresh"))
    assert main(["sweep", str(spec.source), "--remeasure"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("autoprumux: error: ") and "has not started" in err and len(err.splitlines()) == 1
    assert not spec.table_path.exists()


def test_worker_needs_an_existing_sweep_with_the_same_settings(tmp_path, capsys):
    spec_path = write_spec(tmp_path, "w")
    spec = load_spec(spec_path)
    assert main(["worker", str(spec_path), "--storage", spec.storage_url, "--wait", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
    prepare_sweep(spec)
    assert main(["worker", str(spec_path), "--storage", spec.storage_url.replace("study.db", "other.db"), "--wait", "0"]) == 2
    other = spec_path.read_text().replace("[finetune]\nepochs = 1", "[finetune]\nepochs = 3")
    spec_path.write_text(other)
    with pytest.raises(SpecError, match=r"finetune.epochs: 1.0 in the study, 3.0 in the spec"):
        run_worker(load_spec(spec_path))
    with pytest.raises(SpecError, match="does not match sweep"):
        run_sweep(load_spec(spec_path))


def test_status_counts_points(tmp_path, capsys):
    spec_path = write_spec(tmp_path, "s")
    spec = load_spec(spec_path)
    assert not sweep_status(spec).started
    assert main(["status", str(spec_path)]) == 0
    db_file = tmp_path / "s" / "study.db"
    assert f"not started: there is no database file '{db_file}'" in capsys.readouterr().out  # where it looked
    assert not db_file.exists()  # status never creates a sweep
    study, storage, queued = prepare_sweep(spec)
    assert len(queued) == 4
    trial = claim_next_trial(study, storage)
    assert (trial.params["mux"], trial.params["sparsity"]) == (2, 0.0)  # s = 0 first, the widest N first
    study.tell(trial, [0.9, 100.0])
    second = claim_next_trial(study, storage)
    assert (second.params["mux"], second.params["sparsity"]) == (1, 0.0)
    status = sweep_status(spec)
    assert (status.points, status.done, status.running, status.waiting, status.failed) == (4, 1, 1, 2, 0)
    assert main(["status", str(spec_path)]) == 0
    out = capsys.readouterr().out
    assert "done 1, running 1, waiting 2, failed 0" in out and str(spec.table_path) in out


def test_dashboard_serves_the_sweep_storage(tmp_path, monkeypatch):
    import optuna_dashboard

    spec = load_spec(write_spec(tmp_path, "d"))
    with pytest.raises(StorageError, match="does not exist"):
        open_dashboard(spec)
    prepare_sweep(spec)
    calls, lines = [], []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kw: calls.append((storage, kw)))
    open_dashboard(spec, host="0.0.0.0", port=8123, report=lines.append)
    ((storage, kwargs),) = calls
    assert storage.url == spec.storage_url and kwargs == {"host": "0.0.0.0", "port": 8123}
    assert "d" in optuna.study.get_all_study_names(storage)
    assert "http://0.0.0.0:8123/" in lines[0]


def test_local_worker_placement():
    gpus = local_workers(3, None, gpus=2)
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in gpus] == ["0", "1", "0"]
    assert {w.device for w in gpus} == {"cuda"}
    cpus = local_workers(2, "cpu", gpus=0)
    cores = len(os.sched_getaffinity(0))
    assert [w.threads for w in cpus] == [max(1, cores // 2)] * 2
    assert cpus[0].env["OMP_NUM_THREADS"] == str(max(1, cores // 2))


def test_every_shipped_spec_loads_and_plans():
    specs = sorted((__import__("pathlib").Path(__file__).parents[1] / "sweeps").glob("*.toml"))
    assert len(specs) >= 3
    for path in specs:
        spec = load_spec(path)
        plan = plan_sweep(spec)
        assert (1, 0.0) in {(t.mux, t.sparsity) for t in plan.trials}
        assert len(plan.trials) == len(set(spec.grid.mux) | {1}) * len(set(spec.grid.sparsity) | {0.0})


def test_a_new_sweep_says_so_before_it_trains_and_a_resume_does_not(tmp_path):
    spec = load_spec(write_spec(tmp_path, "new"))
    said = []

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, pipeline=stop, progress=said.append)
    assert said[0].startswith("starting a NEW sweep 'new': there is no database file")
    said.clear()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, pipeline=stop, progress=said.append)
    assert not any("NEW sweep" in line for line in said)
