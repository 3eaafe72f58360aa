"""One storage contract, run on SQLite and on a real PostgreSQL server (as Optuna's storage tests).

`make test` installs PostgreSQL's server when it is missing; these tests start a throw-away one
(`autoprumux.testing.postgres`) and fail, never skip, when it cannot run. Trials sleep instead of
training (`autoprumux.testing.pipelines`), so every part of the engine runs in seconds: claims,
heartbeats, retries, queueing and the table.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import socket
import threading
import time
from collections import Counter

import optuna
import pytest
import sqlalchemy
from _sweep_processes import (
    DieAfterResult,
    InterruptAt,
    ProgressPipeline,
    RefuseAt,
    claim_all,
    prepare,
    sweep,
    worker,
)
from optuna.trial import TrialState

from autoprumux.cli import main
from autoprumux.errors import SpecError, StorageError
from autoprumux.spec import spec_from_dict
from autoprumux.sweep import storage as storage_module
from autoprumux.sweep.engine import format_status, prepare_sweep, run_sweep, run_worker, sweep_status
from autoprumux.sweep.plan import plan_sweep
from autoprumux.sweep.storage import open_storage, resolve_url
from autoprumux.sweep.store import _process_is_dead
from autoprumux.sweep.study import create_sweep_study, queue_missing_points
from autoprumux.sweep.worker import fail_dead_workers_trials
from autoprumux.table import read_table
from autoprumux.testing.pipelines import SleepPipeline

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """(name, storage URL) of an empty storage of each kind."""
    if request.param == "sqlite":
        return "sqlite", f"sqlite:///{tmp_path / 'db' / 'study.db'}"
    return "postgresql", request.getfixturevalue("postgres").new_database()


def make_spec(tmp_path, url, *, mux=(1, 2), sparsity=(0.0, 0.5), grace=3, retries=2, name="contract"):
    return spec_from_dict({
        "name": name, "results_dir": str(tmp_path / "results"), "storage": url,
        "grid": {"mux": list(mux), "sparsity": list(sparsity)},
        "workers": {"heartbeat_interval": 1, "grace_period": grace, "max_retries": retries},
    })


def load(spec):
    return optuna.load_study(study_name=spec.name, storage=open_storage(spec.storage_url))


def completed(study) -> Counter:
    return Counter((t.params["mux"], t.params["sparsity"]) for t in study.get_trials(states=(TrialState.COMPLETE,)))


def every_point_once(spec) -> Counter:
    return Counter({(t.mux, round(t.sparsity, 6)): 1 for t in plan_sweep(spec).trials})


def wait_for(condition, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def running(spec):
    return load(spec).get_trials(states=(TrialState.RUNNING,))


# ---------------------------------------------------------------------------------------------
# the contract, on both back ends


def test_concurrent_claims_are_exactly_once(backend, tmp_path):
    spec = make_spec(tmp_path, backend[1], mux=(1, 2, 3, 4), sparsity=(0.0, 0.3, 0.5, 0.7, 0.9))
    prepare_sweep(spec)
    queue = SPAWN.Queue()
    processes = [SPAWN.Process(target=claim_all, args=(spec.storage_url, spec.name, queue)) for _ in range(4)]
    for process in processes:
        process.start()
    claimed = [n for _ in processes for n in queue.get(timeout=120)]
    for process in processes:
        process.join()
    assert sorted(claimed) == list(range(20))  # every trial claimed, none twice


def test_several_workers_run_every_point_exactly_once(backend, tmp_path):
    spec = make_spec(tmp_path, backend[1], mux=(1, 2, 4), sparsity=(0.0, 0.5, 0.7, 0.9))
    prepare_sweep(spec)
    workers = [SPAWN.Process(target=worker, args=(spec, SleepPipeline(0.3))) for _ in range(3)]
    for process in workers:
        process.start()
    run_worker(spec, pipeline=SleepPipeline(0.3))
    for process in workers:
        process.join(timeout=120)
    study = load(spec)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    assert len(study.trials) == 12 and completed(study) == every_point_once(spec)
    assert len({t.user_attrs["worker"] for t in study.trials}) >= 3  # they really shared the work
    assert len(read_table(spec.table_path)) == 12


def test_sigkilled_worker_trial_is_retried_once(backend, tmp_path):
    spec = make_spec(tmp_path, backend[1])
    prepare_sweep(spec)
    victim = SPAWN.Process(target=worker, args=(spec, SleepPipeline(60)))
    victim.start()
    wait_for(lambda: running(spec), what="the victim's claim")
    (killed,) = running(spec)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    report = run_worker(spec, pipeline=SleepPipeline(0.1))  # waits out the grace period, runs the retry too
    study = load(spec)
    assert report.completed == 4 and completed(study) == every_point_once(spec)
    assert study.trials[killed.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    table = read_table(spec.table_path)
    assert len(table) == 4 and table.loc[table.trial_number == retry.number, "retry_of"].item() == killed.number


def test_resume_reruns_nothing_and_interrupts_do_not_use_up_retries(backend, tmp_path):
    spec = make_spec(tmp_path, backend[1], retries=1)
    point = (2, 0.0)  # claimed first: the widest N at s = 0
    for _ in range(2):  # Ctrl-C twice on the same point
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec, pipeline=InterruptAt(0.05, point=point))
    victim = SPAWN.Process(target=worker, args=(spec, SleepPipeline(60)))
    victim.start()
    wait_for(lambda: running(spec), what="the victim's claim")
    os.kill(victim.pid, signal.SIGKILL)  # then a real crash: max_retries = 1 must still allow its retry
    victim.join()
    run_sweep(spec, pipeline=SleepPipeline(0.05))
    study = load(spec)
    assert completed(study) == every_point_once(spec)
    numbers = {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    run_sweep(spec, pipeline=RefuseAt(0.05, point=point))  # resume: nothing is left, nothing runs again
    assert {t.number for t in load(spec).get_trials(states=(TrialState.COMPLETE,))} == numbers


def test_sweeps_started_together_create_and_queue_once(backend, tmp_path):
    spec = make_spec(tmp_path, backend[1], mux=(1, 2, 3), sparsity=(0.0, 0.5))
    queue = SPAWN.Queue()
    starters = [SPAWN.Process(target=prepare, args=(spec, queue)) for _ in range(3)]
    for process in starters:
        process.start()
    outcomes = [queue.get(timeout=120) for _ in starters]
    for process in starters:
        process.join()
    assert sorted(outcomes, key=str) == [0, 0, 6], outcomes  # one queued every point, no one failed
    status = sweep_status(spec)
    assert (status.waiting, len(load(spec).trials)) == (6, 6)


def test_a_worker_started_before_the_sweep_waits_and_joins(backend, tmp_path):
    spec = make_spec(tmp_path, backend[1], mux=(1, 2, 4), sparsity=(0.0, 0.5))
    early = SPAWN.Process(target=worker, args=(spec, SleepPipeline(1.0), 120.0))
    early.start()
    time.sleep(3.0)  # the worker is up and waiting: no study yet (no tables at all on PostgreSQL)
    assert early.is_alive() and not sweep_status(spec).started
    run_sweep(spec, pipeline=SleepPipeline(1.0))
    early.join(timeout=120)
    study = load(spec)
    assert early.exitcode == 0 and completed(study) == every_point_once(spec)
    assert f":{early.pid}" in " ".join(t.user_attrs["worker"] for t in study.trials)  # it took part


def test_a_result_on_disk_is_reported_by_the_retry_not_trained_again(backend, tmp_path):
    spec = make_spec(tmp_path, backend[1])
    prepare_sweep(spec)
    point = (2, 0.0)
    dying = SPAWN.Process(target=worker, args=(spec, DieAfterResult(0.05, point=point)))
    dying.start()
    dying.join(timeout=120)
    assert dying.exitcode == -signal.SIGKILL
    run_worker(spec, pipeline=RefuseAt(0.05, point=point))
    study = load(spec)
    assert completed(study) == every_point_once(spec)
    (done,) = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if (t.params["mux"], t.params["sparsity"]) == point]
    assert done.system_attrs.get("failed_trial") is not None and done.values[0] == pytest.approx(0.9 - 0.02)


def test_status_of_an_empty_storage_writes_nothing(backend, tmp_path, capsys):
    spec = make_spec(tmp_path, backend[1])
    if backend[0] == "sqlite":
        (tmp_path / "db").mkdir()
        sqlalchemy.create_engine(spec.storage_url).connect().close()  # an empty database file
    assert not sweep_status(spec).started
    engine = sqlalchemy.create_engine(resolve_url(spec.storage_url))
    assert sqlalchemy.inspect(engine).get_table_names() == []  # Optuna's tables were not created
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# PostgreSQL only: a server to restart, session time zones


def test_a_server_restart_mid_trial_loses_no_result(postgres, tmp_path):
    spec = make_spec(tmp_path, postgres.new_database(), grace=20)
    prepare_sweep(spec)

    class RestartingPipeline(SleepPipeline):
        def __call__(self, settings, mux, sparsity, out_dir, **kwargs):
            metrics = super().__call__(settings, mux, sparsity, out_dir, **kwargs)
            if (mux, sparsity) == (1, 0.5):
                postgres.restart()  # every pooled connection is cut during the trial
                # and the server is down again when the worker reports the result
                threading.Thread(target=postgres.restart, kwargs={"down_s": 3.0}).start()
                time.sleep(0.5)
            return metrics

    report = run_worker(spec, pipeline=RestartingPipeline(0.2))
    study = load(spec)
    assert report.completed == 4 and report.failed == 0
    assert completed(study) == every_point_once(spec) and len(study.trials) == 4
    assert read_table(spec.table_path).status.eq("COMPLETE").all()


def test_clients_in_other_time_zones_keep_healthy_trials_alive(postgres, tmp_path, monkeypatch):
    spec = make_spec(tmp_path, postgres.new_database(), mux=(1,), sparsity=(0.0,), grace=3)
    prepare_sweep(spec)
    healthy = SPAWN.Process(target=worker, args=(spec, SleepPipeline(6.0), 0.0, {"PGTZ": "America/Los_Angeles"}))
    healthy.start()
    monkeypatch.setenv("PGTZ", "Asia/Tokyo")  # this process watches for dead workers from Tokyo
    watcher = optuna.load_study(study_name=spec.name, storage=open_storage(spec.storage_url, spec.workers))
    wait_for(lambda: watcher.get_trials(states=(TrialState.RUNNING,)), what="the claim")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fail_dead_workers_trials(watcher)
        time.sleep(0.5)
    healthy.join(timeout=60)
    trials = load(spec).trials
    assert healthy.exitcode == 0 and [t.state for t in trials] == [TrialState.COMPLETE]


# ---------------------------------------------------------------------------------------------
# URLs and unreachable servers


def test_a_plain_postgresql_url_uses_an_installed_driver(monkeypatch):
    url = "postgresql://u:pw@db/sweeps"
    assert resolve_url(url) == url  # psycopg 3, which the postgres extra installs
    monkeypatch.setattr(storage_module, "_driver_available", lambda module: module == "psycopg2")
    assert resolve_url(url) == "postgresql+psycopg2://u:pw@db/sweeps"
    monkeypatch.setattr(storage_module, "_driver_available", lambda module: False)
    with pytest.raises(StorageError, match=r"pip install 'autoprumux\[postgres\]'"):
        resolve_url(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_storage_is_a_one_line_error(tmp_path, capsys, url):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(f'name = "m"\nresults_dir = "{tmp_path}"\n')
    for command in (["status", str(spec_path)], ["sweep", str(spec_path)]):
        assert main([*command, "--storage", url]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("autoprumux: error:") and "outlives" in err and len(err.splitlines()) == 1


def test_a_server_that_never_answers_times_out_with_one_line(tmp_path, capsys):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (the kernel does) and never says a word
    port = listener.getsockname()[1]
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(f'name = "m"\nresults_dir = "{tmp_path}"\n')
    start = time.monotonic()
    try:
        code = main(["status", str(spec_path), "--storage", f"postgresql://u@127.0.0.1:{port}/db?connect_timeout=2"])
    finally:
        listener.close()
    err = capsys.readouterr().err.strip()
    assert code == 2 and time.monotonic() - start < 30
    assert err.startswith("autoprumux: error: cannot open storage") and len(err.splitlines()) == 1


def test_sigint_to_a_multi_worker_sweep_reaches_its_workers(tmp_path):
    spec = make_spec(tmp_path, f"sqlite:///{tmp_path / 'study.db'}")
    parent = SPAWN.Process(target=sweep, args=(spec, SleepPipeline(120), 2))
    parent.start()
    wait_for(lambda: sweep_status(spec).started and len(running(spec)) == 2, what="two running trials")
    pids = [int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running(spec)]
    os.kill(parent.pid, signal.SIGINT)  # to the parent alone, as `kill -INT` does
    parent.join(timeout=60)

    wait_for(lambda: all(map(_process_is_dead, pids)), timeout=30, what="the workers to exit")
    study = load(spec)
    assert not study.get_trials(states=(TrialState.RUNNING,))  # interrupted trials were queued again
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 4


def test_queueing_twice_in_one_process_queues_once(backend, tmp_path):
    spec = make_spec(tmp_path, backend[1])
    storage = open_storage(spec.storage_url, spec.workers, create=True)
    study = create_sweep_study(spec, storage)
    assert len(queue_missing_points(study, plan_sweep(spec))) == 4
    assert queue_missing_points(study, plan_sweep(spec)) == []


def test_a_study_made_before_a_setting_existed_resumes_at_its_default(tmp_path):
    from autoprumux.sweep.study import ATTR_TRAINING

    spec = make_spec(tmp_path, f"sqlite:///{tmp_path / 'study.db'}")
    study, _, _ = prepare_sweep(spec)
    older = study.user_attrs[ATTR_TRAINING]
    del older["bench"]["dtype"]  # as stored before [bench] dtype was a setting
    study.set_user_attr(ATTR_TRAINING, older)
    prepare_sweep(spec)  # resumes: the old trials were measured at the default dtype
    changed = spec_from_dict({**{"name": spec.name, "results_dir": spec.results_dir, "storage": spec.storage},
                              "bench": {"dtype": "bf16"}})
    with pytest.raises(SpecError, match=r"bench.dtype: 'fp32' in the study, 'bf16' in the spec"):
        prepare_sweep(changed)


def test_status_shows_each_running_trial_stage_and_progress(tmp_path, capsys):
    spec = make_spec(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", mux=(1,), sparsity=(0.0,))
    prepare_sweep(spec)
    busy = SPAWN.Process(target=worker, args=(spec, ProgressPipeline(4.0)))
    busy.start()
    line = re.compile(r"running trial 0 \(N=1, s=0\) on [^:]+:\d+: finetune: (\d+)/20 batches, about \d+ s left")

    wait_for(lambda: line.search(format_status(sweep_status(spec))), timeout=60, what="the trial's progress in status")
    busy.join(timeout=60)
    assert busy.exitcode == 0 and "running trial" not in format_status(sweep_status(spec))
