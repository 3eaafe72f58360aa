"""The stage store: each stage is built once across processes; dead builders' locks are broken."""

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from autoprumux.sweep.store import StageStore, process_identity, stage_counts


def _write_stage(marker_dir, delay=0.0):
    def build(target):
        time.sleep(delay)
        target.mkdir()
        (target / "stage.json").write_text(json.dumps({"pid": os.getpid()}))
        with open(marker_dir / "builds.txt", "a") as handle:
            handle.write(f"{os.getpid()}\n")

    return build


def test_builds_once_then_reuses(tmp_path):
    store = StageStore(tmp_path / "artifacts")
    first = store.run_once("finetune-N1-abc", _write_stage(tmp_path))
    second = store.run_once("finetune-N1-abc", _write_stage(tmp_path))
    assert first == second == tmp_path / "artifacts" / "finetune-N1-abc"
    assert (first / "stage.json").is_file()
    assert (store.built, store.reused) == (1, 1)
    assert len((tmp_path / "builds.txt").read_text().split()) == 1
    counts = stage_counts(tmp_path / "artifacts")
    assert (counts.built, counts.reused, counts.builds_per_key) == (1, 1, {"finetune-N1-abc": 1})
    assert not any((tmp_path / "artifacts" / ".locks").iterdir())  # released


def test_failed_build_leaves_nothing_and_can_be_retried(tmp_path):
    store = StageStore(tmp_path / "a")

    def broken(target):
        target.mkdir()
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        store.run_once("k", broken)
    assert not (tmp_path / "a" / "k").exists()
    assert not any((tmp_path / "a" / ".building").iterdir())
    store.run_once("k", _write_stage(tmp_path))
    assert (tmp_path / "a" / "k" / "stage.json").is_file()


def _race(root, marker_dir, queue):
    store = StageStore(root, poll_s=0.05)
    path = store.run_once("shared", _write_stage(marker_dir, delay=0.5))
    queue.put((str(path), store.built, store.reused))


def test_concurrent_processes_build_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_race, args=(tmp_path / "a", tmp_path, queue)) for _ in range(4)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join()
    assert {r[0] for r in results} == {str(tmp_path / "a" / "shared")}
    assert sum(r[1] for r in results) == 1 and sum(r[2] for r in results) == 3
    assert len((tmp_path / "builds.txt").read_text().split()) == 1


def _plant_lock(root, key, pid, host, scratch, **identity):
    locks = root / ".locks"
    locks.mkdir(parents=True)
    scratch.mkdir(parents=True)
    lock = locks / f"{key}.lock"
    owner = {**process_identity(), "pid": pid, "host": host, **identity}
    lock.write_text(json.dumps({**owner, "token": "x", "scratch": str(scratch)}))
    return lock


def test_lock_of_a_dead_process_is_broken_at_once(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / "a"
    scratch = root / ".building" / "k.dead"
    _plant_lock(root, "k", dead.pid, socket.gethostname(), scratch)
    store = StageStore(root, stale_after_s=3600)  # only the dead pid can make it stale
    start = time.monotonic()
    store.run_once("k", _write_stage(tmp_path))
    assert time.monotonic() - start < 5
    assert not scratch.exists()  # the dead builder's half-written output is cleaned up
    log = [json.loads(line) for line in (root / "stages.jsonl").read_text().splitlines()]
    assert [e["event"] for e in log] == ["broke-stale-lock", "built"]


def test_lock_with_old_heartbeat_on_another_host_is_broken_after_stale_after(tmp_path):
    root = tmp_path / "a"
    lock = _plant_lock(root, "k", 1, "some-other-machine", root / ".building" / "k.remote")
    store = StageStore(root, stale_after_s=1.0, poll_s=0.05)
    start = time.monotonic()
    store.run_once("k", _write_stage(tmp_path))
    waited = time.monotonic() - start
    assert 0.8 < waited < 10  # waited for the heartbeat to age, then took over
    assert not lock.exists()


def test_live_lock_is_respected_while_its_heartbeat_is_fresh(tmp_path):
    root = tmp_path / "a"
    lock = _plant_lock(root, "k", os.getpid(), "some-other-machine", root / ".building" / "k.live")
    store = StageStore(root, stale_after_s=1.5, poll_s=0.05)

    def finish_later():
        # The "other machine" keeps its lock fresh, then publishes the stage and releases.
        for _ in range(6):
            os.utime(lock)
            time.sleep(0.25)
        (root / "k").mkdir()
        (root / "k" / "stage.json").write_text("{}")
        lock.unlink()

    import threading

    thread = threading.Thread(target=finish_later)
    thread.start()
    path = store.run_once("k", _write_stage(tmp_path))
    thread.join()
    assert path == root / "k"
    assert (store.built, store.reused) == (0, 1)
    assert not (tmp_path / "builds.txt").exists()


def test_a_dead_pid_in_another_pid_namespace_of_the_same_host_is_not_a_dead_lock(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / "a"
    # Another container on this host (same host name, its own pid namespace): its pid means
    # nothing here, so only the heartbeat can make its lock stale.
    lock = _plant_lock(root, "k", dead.pid, socket.gethostname(), root / ".building" / "k.other",
                       pid_namespace="pid:[4026530000]")
    store = StageStore(root, stale_after_s=1.0, poll_s=0.05)
    start = time.monotonic()
    store.run_once("k", _write_stage(tmp_path))
    assert time.monotonic() - start > 0.8  # it waited for the heartbeat to age
    assert not lock.exists()

