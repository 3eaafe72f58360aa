"""Torch-free process targets for the storage tests (spawned children import only this module)."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import optuna

from autoprumux.spec import WorkerSettings
from autoprumux.sweep.storage import open_storage
from autoprumux.sweep.study import claim_next_trial
from autoprumux.testing.pipelines import SleepPipeline


def claim_all(url, name, queue):
    storage = open_storage(url, WorkerSettings())
    study = optuna.load_study(study_name=name, storage=storage)
    claimed = []
    while (trial := claim_next_trial(study, storage)) is not None:
        claimed.append(trial.number)
    queue.put(claimed)


def prepare(spec, queue):
    """Start the sweep (`prepare_sweep`); report the number of points this process queued, or the error."""
    from autoprumux.sweep.engine import prepare_sweep

    try:
        queue.put(len(prepare_sweep(spec)[2]))
    except Exception as error:  # the test shows what went wrong in the child
        queue.put(f"{type(error).__name__}: {error}")


def worker(spec, pipeline, wait_s=0.0, env=None):
    """`autoprumux worker` with a test pipeline, in a fresh process (env set before connecting)."""
    from autoprumux.sweep.engine import run_worker

    os.environ.update(env or {})
    run_worker(spec, pipeline=pipeline, wait_s=wait_s)


def sweep(spec, pipeline, workers):
    """`autoprumux sweep --workers K` with a test pipeline; Ctrl-C ends it quietly."""
    from autoprumux.sweep.engine import run_sweep

    try:
        run_sweep(spec, workers=workers, pipeline=pipeline, device="cpu")
    except KeyboardInterrupt:
        pass


@dataclass(frozen=True)
class InterruptAt(SleepPipeline):
    """Ctrl-C while training `point`; other points sleep as usual."""

    point: tuple[int, float] = (1, 0.0)

    def __call__(self, settings, mux, sparsity, out_dir, **kwargs):
        if (mux, sparsity) == self.point:
            raise KeyboardInterrupt()
        return super().__call__(settings, mux, sparsity, out_dir, **kwargs)


@dataclass(frozen=True)
class DieAfterResult(SleepPipeline):
    """At `point`: write the finished result into the trial's folder, then die before the study hears of it."""

    point: tuple[int, float] = (1, 0.0)

    def __call__(self, settings, mux, sparsity, out_dir, **kwargs):
        metrics = super().__call__(settings, mux, sparsity, out_dir, **kwargs)
        if (mux, sparsity) == self.point:
            (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics))
            os.kill(os.getpid(), signal.SIGKILL)
        return metrics


@dataclass(frozen=True)
class RefuseAt(SleepPipeline):
    """Fails if asked to train `point` (it must not be trained again)."""

    point: tuple[int, float] = (1, 0.0)

    def __call__(self, settings, mux, sparsity, out_dir, **kwargs):
        if (mux, sparsity) == self.point:
            raise RuntimeError(f"{self.point} was trained again")
        return super().__call__(settings, mux, sparsity, out_dir, **kwargs)


@dataclass(frozen=True)
class ProgressPipeline(SleepPipeline):
    """Trains nothing, but reports 20 batches of a 'finetune' stage over `seconds`, as train_loop does."""

    def __call__(self, settings, mux, sparsity, out_dir, **kwargs):
        import time

        from autoprumux import progress

        for done in range(1, 21):
            time.sleep(self.seconds / 20)
            progress.update("finetune", done, 20)
        return super().__call__(settings, mux, sparsity, out_dir, **kwargs)
