"""One (N, s) configuration through the PruMUX pipeline: `autoprumux train` and every sweep trial.

    from autoprumux.spec import TrainingSettings
    from autoprumux.train.pipeline import train_configuration
    metrics = train_configuration(TrainingSettings(), mux=2, sparsity=0.0, out_dir=Path("runs/n2"))

Runs the stages of `stage_chain` in order (warm-up -> fine-tune -> prune -> post-fine-tune),
reusing any stage whose output already exists, copies the last stage's model to `out_dir/model/`,
measures its throughput with `autoprumux.bench` and writes `out_dir/metrics.json`, whose keys are
the results-table columns (`autoprumux.table.COLUMNS`) plus per-stage details.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from autoprumux.errors import AutoprumuxError, ModelError
from autoprumux.spec import TrainingSettings, settings_to_dict, validate_mux_width, validate_sparsity
from autoprumux.train.plan import Stage, stage_chain

StageFunction = Callable[..., dict]


def stage_functions() -> dict[str, StageFunction]:
    """The stage name -> `run_<stage>` dispatch."""
    from autoprumux.train.finetune import run_finetune, run_warmup
    from autoprumux.train.pretrain import run_pretrain
    from autoprumux.train.prune_stage import run_post_finetune, run_prune

    return {
        "pretrain": run_pretrain, "warmup": run_warmup, "finetune": run_finetune, "prune": run_prune,
        "post_finetune": run_post_finetune,
    }


def code_version() -> str:
    """The git commit of the source tree (`git rev-parse --short HEAD`), else the package version."""
    from autoprumux import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return commit or __version__


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_teacher(teacher_dir: Path, mux: int) -> None:
    from autoprumux.train.stage_io import MODEL_DIR, read_stage_metrics

    if not (Path(teacher_dir) / MODEL_DIR / "config.json").is_file():
        raise ModelError(f"--teacher {str(teacher_dir)!r} holds no model/ (expected an s = 0 run directory of N = {mux})")
    teacher_mux = read_stage_metrics(teacher_dir).get("mux")
    if teacher_mux is not None and int(teacher_mux) != mux:
        raise ModelError(f"--teacher {str(teacher_dir)!r} was trained with N = {teacher_mux}; this run has N = {mux}")


def _run_stages(settings, chain, out_dir, *, device, teacher_dir, store, progress) -> list[dict]:
    """Run (or reuse) every stage; returns one record per stage: name, key, dir, reused, metrics."""
    from autoprumux.train.stage_io import read_stage_metrics

    functions = stage_functions()
    records: list[dict] = []
    parent: Path | None = None
    finetune_dir: Path | None = None
    for stage in chain:
        if teacher_dir is not None and stage.name in ("pretrain", "warmup"):
            continue  # the teacher run already went through it
        if teacher_dir is not None and stage.name == "finetune":
            stage_dir, reused = Path(teacher_dir), True
        else:
            stage_dir, reused = _run_one(
                functions[stage.name], settings, stage, parent, out_dir,
                device=device, teacher_dir=finetune_dir, store=store, progress=progress,
            )
        if stage.name == "finetune":
            finetune_dir = stage_dir
        metrics = read_stage_metrics(stage_dir)
        records.append({"name": stage.name, "key": stage.key, "dir": str(stage_dir), "reused": reused, "metrics": metrics})
        parent = stage_dir
    return records


def _run_one(function, settings, stage: Stage, parent, out_dir, *, device, teacher_dir, store, progress):
    from autoprumux.train.stage_io import STAGE_FILE, read_stage_metrics, write_json_atomic

    built = False

    def build(target: Path) -> None:
        nonlocal built
        function(settings, stage, parent, Path(target), device=device, teacher_dir=teacher_dir, progress=progress)
        if device.type == "cpu":  # the thread count changes floating-point sums, and so results
            metrics = read_stage_metrics(target)
            write_json_atomic(Path(target) / STAGE_FILE, {**metrics, "cpu_threads": _cpu_threads()})
        built = True

    if store is not None:
        stage_dir = Path(store.run_once(stage.key, build))
    else:
        stage_dir = Path(out_dir) / "stages" / stage.key
        if not (stage_dir / STAGE_FILE).is_file():
            build(stage_dir)
    if not built and device.type == "cpu":
        _warn_on_other_threads(stage, read_stage_metrics(stage_dir).get("cpu_threads"))
    return stage_dir, not built


def _cpu_threads() -> int:
    import torch

    return torch.get_num_threads()


def _warn_on_other_threads(stage: Stage, trained_with) -> None:
    """One line when a reused CPU stage was trained with another thread count than this process
    uses: its result can differ from what this process would train by a few points."""
    if trained_with is not None and int(trained_with) != _cpu_threads():
        print(
            f"warning: stage {stage.key} is reused from a run on {trained_with} CPU thread(s), this one "
            f"uses {_cpu_threads()}; training from scratch can differ by a few points between thread "
            "counts (delete the stage to retrain it here)",
            file=sys.stderr,
        )


def _surviving_structure(model) -> dict:
    """Heads and FFN dims per layer, hidden size and skipped blocks, read from the weights' shapes."""
    from autoprumux.prune import surviving_structure

    return surviving_structure(model)


def _benchmark(model, settings: TrainingSettings, device) -> dict:
    """Throughput columns of the results table, from the one harness (`autoprumux.bench`)."""
    from autoprumux.bench import bench_options, measure_throughput

    return measure_throughput(model, device=device, **bench_options(settings.bench)).to_metrics()


def train_configuration(
    settings: TrainingSettings,
    mux: int,
    sparsity: float,
    out_dir: Path,
    *,
    device: str | None = None,
    teacher_dir: Path | None = None,
    store=None,
    progress: bool = True,
) -> dict:
    """Train configuration (N = `mux`, s = `sparsity`) into `out_dir`; returns its metrics.

    Stages go to `store.run_once(key, build)` when a store (the sweep's cache) is given, else to
    `out_dir/stages/<key>/`, where an existing finished stage is reused. `teacher_dir` is an
    existing s = 0 run of the same N that replaces the warm-up and fine-tune. Writes
    `out_dir/model/` and `out_dir/metrics.json` (results-table columns, fractions not percent,
    throughput in examples/s, duration in seconds excluding reused stages).
    """
    from autoprumux.models import load_model
    from autoprumux.train.device import resolve_device
    from autoprumux.train.stage_io import copy_model_dir, write_json_atomic

    mux = validate_mux_width(mux, "mux")
    sparsity = validate_sparsity(sparsity, "sparsity")
    settings = settings.for_mux(mux)  # the backbone of this N ([models]) becomes `model`
    chain = stage_chain(settings, mux, sparsity)
    if teacher_dir is not None:
        _check_teacher(Path(teacher_dir), mux)
    torch_device = resolve_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails here, before any training
    started_at, started = _now(), time.perf_counter()
    records = _run_stages(
        settings, chain, out_dir, device=torch_device, teacher_dir=teacher_dir, store=store, progress=progress
    )
    final = records[-1]
    model_dir = copy_model_dir(Path(final["dir"]), out_dir)
    model = load_model(model_dir)
    from autoprumux.prune import measured_sparsity as sparsity_of  # the one sparsity count

    measured_sparsity = sparsity_of(model)
    metrics = {
        "task": settings.task,
        "model": settings.model,
        "mux": mux,
        "sparsity_target": sparsity,
        "sparsity": max(0.0, measured_sparsity),
        "accuracy": final["metrics"].get("accuracy"),
        "eval_examples": final["metrics"].get("validation_examples"),
        "num_labels": model.config.num_labels,
        "retrieval_accuracy": _retrieval_accuracy(records),
        "params": model.num_parameters(),
        "device": torch_device.type,
        "seed": settings.seed,
        "status": "COMPLETE",
        **_benchmark(model, settings, torch_device),
        "duration_s": sum(r["metrics"].get("duration_s", 0.0) for r in records if not r["reused"]),
        "wall_s": time.perf_counter() - started,
        "started_at": started_at,
        "finished_at": _now(),
        "checkpoint": str(model_dir),
        "code_version": code_version(),
        "stages": [{k: v for k, v in r.items() if k != "metrics"} | {"metrics": _brief(r["metrics"])} for r in records],
        "structure": _surviving_structure(model),
        "settings": settings_to_dict(settings),
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics


def _retrieval_accuracy(records: list[dict]) -> float | None:
    """Validation token-retrieval accuracy of the last stage before task training that scored it (N > 1)."""
    scored = [
        r["metrics"]["retrieval_accuracy"] for r in records
        if r["metrics"].get("retrieval_accuracy") is not None and r["metrics"].get("mux", 1) > 1
    ]
    return scored[-1] if scored else None


def _brief(stage_metrics: dict) -> dict:
    """A stage's metrics without its bulky parts (the full history stays in its stage.json)."""
    return {k: v for k, v in stage_metrics.items() if k not in ("settings", "history")}


def settings_from_args(args) -> TrainingSettings:
    """`TrainingSettings` from `autoprumux train` flags: the `--spec` file's (or the defaults), then flags.

    Flags: --task, --model, --seed, --epochs (fine-tuning epochs), --train-examples (training
    split size / cap), --data-path. Unknown tasks and models are reported here, before any work.
    """
    from autoprumux.spec import _check_task_and_model, load_spec

    settings = load_spec(args.spec).training if getattr(args, "spec", None) else TrainingSettings()
    top = {}
    for flag, field in (("task", "task"), ("model", "model"), ("seed", "seed")):
        value = getattr(args, flag, None)
        if value is not None:
            top[field] = value
    if "model" in top:
        top["models"] = ()  # --model is the backbone of this run, whatever the spec's [models] say
    data = {}
    if getattr(args, "train_examples", None) is not None:
        data["train_size"] = args.train_examples
    if getattr(args, "data_path", None) is not None:
        data["path"] = args.data_path
    finetune = {}
    if getattr(args, "epochs", None) is not None:
        if args.epochs < 0:
            raise AutoprumuxError(f"--epochs = {args.epochs!r} is invalid; expected a number >= 0")
        finetune.update(epochs=float(args.epochs), steps=None, examples=None)  # the flag's unit wins
    settings = dataclasses.replace(
        settings,
        **top,
        data=dataclasses.replace(settings.data, **data),
        finetune=dataclasses.replace(settings.finetune, **finetune),
    )
    _check_task_and_model(settings)
    return settings
