"""A torch-free process target for the claim test (spawned children import only this)."""

import optuna

from autoprumux.spec import WorkerSettings
from autoprumux.sweep.storage import open_storage
from autoprumux.sweep.study import claim_next_trial


def claim_all(url, name, queue):
    storage = open_storage(url, WorkerSettings())
    study = optuna.load_study(study_name=name, storage=storage)
    claimed = []
    while (trial := claim_next_trial(study, storage)) is not None:
        claimed.append(trial.number)
    queue.put(claimed)
