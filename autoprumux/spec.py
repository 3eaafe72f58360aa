"""Sweep specs: a TOML file -> validated, frozen dataclasses.

Every knob has a default in a dataclass below; a spec file overrides what it names, and an unknown
key is an error. The same stage settings serve `autoprumux train` (one configuration) and
`autoprumux sweep` (a grid), so there is one definition of each setting.

A spec looks like::

    name = "demo"
    task = "synthetic-sentiment"
    model = "tiny"
    seed = 0

    [grid]
    mux = [1, 2, 4]
    sparsity = [0.0, 0.5, 0.7, 0.9]

    [finetune]
    epochs = 8

    [models]    # optional: the checkpoint each N starts from (others start from `model`)
    2 = "princeton-nlp/muxbert_base_gaussian_hadamard_index_pos_2"

Batch sizes count multiplexed *sequences*; each sequence carries N examples, so a stage with
`batch_size = 32` at N = 4 sees 128 examples per step (the PruMUX recipe's convention).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from autoprumux.errors import SpecError

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

MULTIPLEXERS = ("gaussian_hadamard", "binary_hadamard", "learned")
DEMULTIPLEXERS = ("index_pos", "index", "mlp")
READOUTS = ("cls", "instance_mean")
BENCH_DTYPES = ("fp32", "bf16", "fp16")
BUDGET_UNITS = ("epochs", "steps", "examples")


@dataclass(frozen=True)
class StageBudget:
    """How long a stage trains: `amount` epochs, optimizer steps or examples seen (the one definition).

    Epochs count passes over the training split in multiplexed batches, so at a fixed batch size
    an epoch at N = 4 is a quarter of the steps of one at N = 1. Steps and examples do not shrink
    with N: a budget of 2,000 steps is 2,000 optimizer updates at every N, and one of 256,000
    examples sees that many original inputs (a multiplexed sequence carries N of them).
    """

    amount: float
    unit: str  # one of BUDGET_UNITS

    def batches(self, train_examples: int, mux_width: int, batch_size: int, grad_accum: int = 1) -> int:
        """Batches (forward/backward passes) the budget allows on a split of `train_examples`."""
        if self.unit == "epochs":
            return math.ceil(self.amount * batches_per_epoch(train_examples, mux_width, batch_size))
        if self.unit == "steps":
            return int(self.amount) * grad_accum
        return math.ceil(self.amount / (batch_size * mux_width))

    def steps(self, train_examples: int, mux_width: int, batch_size: int, grad_accum: int = 1) -> int:
        """Optimizer steps the budget allows."""
        return math.ceil(self.batches(train_examples, mux_width, batch_size, grad_accum) / grad_accum)

    def __str__(self) -> str:
        return f"{self.amount:,g} {self.unit}"


def batches_per_epoch(num_examples: int, mux_width: int, batch_size: int) -> int:
    """Multiplexed batches in one pass over `num_examples`: ceil(ceil(M / N) / B)."""
    return math.ceil(math.ceil(num_examples / mux_width) / batch_size)


@dataclass(frozen=True)
class _Budgeted:
    """Stage settings whose length is `epochs` (each stage sets its default), or `steps` /
    `examples` when one of those is set."""

    steps: int | None = None  # optimizer steps instead of epochs
    examples: int | None = None  # examples seen instead of epochs

    @property
    def budget(self) -> StageBudget:
        if self.steps is not None:
            return StageBudget(self.steps, "steps")
        if self.examples is not None:
            return StageBudget(self.examples, "examples")
        return StageBudget(self.epochs, "epochs")


@dataclass(frozen=True)
class DataSettings:
    """Which examples a run sees and how they are tokenised."""

    path: str | None = None  # local folder/file for `local` and GLUE tasks
    train_size: int | None = None  # size of generated train split / cap for file tasks
    eval_size: int | None = None  # size of generated validation split / cap
    max_seq_len: int = 48  # tokens per instance (all N instances share one length)
    # Accuracy evaluation cuts each batch to its longest real example (as PruMUX does): padding is
    # masked, so only speed changes and the setting is not part of any stage key. The throughput
    # harness keeps its fixed [bench] shapes either way.
    trim_padding: bool = True
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None


@dataclass(frozen=True)
class MuxSettings:
    """Multiplexer and demultiplexer of the model (MECHANICS.md section 1)."""

    multiplexer: str = "gaussian_hadamard"
    demultiplexer: str = "index_pos"
    demux_layers: int = 3
    mux_norm: float = 1.0
    readout: str = "instance_mean"  # or "cls" (position 0 only: N >= 3 stayed at chance; MECHANICS.md)
    pooler: bool = True  # BERT's pooler on each demultiplexed state at N > 1 (the references have none)


@dataclass(frozen=True)
class PretrainSettings(_Budgeted):
    """Multiplexed pre-training: masked-token prediction plus token retrieval over unlabelled text.

    Off by default (`epochs = 0`). When on, it is the first stage at every N of the grid, N = 1
    included (masked-token prediction only, so the baseline gets the same pre-training), and it
    replaces the retrieval warm-up at N > 1. Its output depends on the backbone, N, the corpus
    and these settings, not on the task: with a named `corpus`, every task and sparsity of one N
    starts from one pre-trained model.
    """

    epochs: float = 0.0
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.1
    mask_probability: float = 0.15  # of each instance's real tokens, BERT's 80/10/10 corruption
    retrieval_target: float | None = None  # stop once validation retrieval accuracy reaches it (budget = cap)
    corpus: str | None = None  # a text file (one text per line) or a folder of .txt files; None = the task's training texts


@dataclass(frozen=True)
class WarmupSettings(_Budgeted):
    """Token-retrieval warm-up, run before task training when N > 1 (a length of 0 skips it)."""

    epochs: float = 4.0
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.1
    retrieval_fraction: float = 1.0  # fraction of positions scored
    retrieval_target: float | None = None  # stop once validation retrieval accuracy reaches it (budget = cap)


@dataclass(frozen=True)
class FinetuneSettings(_Budgeted):
    """Task fine-tuning of the multiplexed model: the s = 0 point and the pruning teacher."""

    epochs: float = 10.0
    batch_size: int = 32
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    retrieval_loss_coeff: float = 0.0
    head_lr_scale: float = 1.0  # demultiplexer, pooler and classifier learn at this x the rate (N > 1)


@dataclass(frozen=True)
class PruneSettings(_Budgeted):
    """CoFi pruning with distillation from the s = 0 model of the same N (MECHANICS.md section 2)."""

    epochs: float = 4.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    reg_learning_rate: float = 0.01  # gates (log alpha) and Lagrange multipliers
    lagrangian_warmup_epochs: float = 2.0
    lagrangian_warmup_ratio: float | None = None  # share of the stage's steps instead (for budgets in steps)
    grad_accum: int = 1
    droprate_init: float = 0.5
    freeze_embeddings: bool = False  # keep the embedding layer fixed while pruning (the PruMUX recipe)
    distill_layer_weight: float = 0.9
    distill_pred_weight: float = 0.1
    distill_ce_weight: float = 0.0
    distill_temperature: float = 2.0


@dataclass(frozen=True)
class PostFinetuneSettings(_Budgeted):
    """Fine-tuning of the pruned model with its masks fixed."""

    epochs: float = 2.0
    batch_size: int = 64
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.0
    distill_pred_weight: float = 0.0


@dataclass(frozen=True)
class BenchSettings:
    """Throughput harness settings (DESIGN.md, "Throughput")."""

    batch_size: int = 64  # multiplexed sequences per forward pass
    seq_len: int = 48
    warmup: int = 3
    repeats: int = 10
    threads: int | None = None  # CPU threads; None = all available
    dtype: str = "fp32"  # numeric type of the measurement: fp32, bf16 or fp16 (weights and activations)


@dataclass(frozen=True)
class WorkerSettings:
    """Fault tolerance of sweep workers."""

    max_retries: int = 2
    heartbeat_interval: int = 10  # seconds
    grace_period: int = 30  # seconds without heartbeat before a trial counts as dead


@dataclass(frozen=True)
class TrainingSettings:
    """Everything one configuration's pipeline needs, minus (N, s)."""

    task: str = "synthetic-sentiment"
    model: str = "tiny"
    seed: int = 0
    data: DataSettings = field(default_factory=DataSettings)
    mux: MuxSettings = field(default_factory=MuxSettings)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    post_finetune: PostFinetuneSettings = field(default_factory=PostFinetuneSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)
    models: tuple[tuple[int, str], ...] = ()  # the [models] table: (N, checkpoint that N starts from)

    def model_for(self, mux: int) -> str:
        """The backbone that N = `mux` starts from: its `[models]` entry, else `model`."""
        return dict(self.models).get(mux, self.model)

    def for_mux(self, mux: int) -> TrainingSettings:
        """These settings with `model` resolved for N = `mux` (what a trial of that N trains with)."""
        return dataclasses.replace(self, model=self.model_for(mux), models=())


@dataclass(frozen=True)
class GridSettings:
    """The (N, s) grid. The baseline (1, 0) is always part of it."""

    mux: tuple[int, ...] = (1, 2, 4)
    sparsity: tuple[float, ...] = (0.0, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep: its name, grid, storage and the training settings of every trial."""

    name: str
    training: TrainingSettings
    grid: GridSettings = field(default_factory=GridSettings)
    storage: str | None = None  # Optuna storage URL; None = sqlite:///<results_dir>/study.db
    results_dir: str | None = None  # None = results/<name>
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    source: str | None = None  # the file it was loaded from

    @property
    def results_path(self) -> Path:
        return Path(self.results_dir) if self.results_dir else Path("results") / self.name

    @property
    def table_path(self) -> Path:
        return self.results_path / "trials.csv"

    @property
    def artifacts_path(self) -> Path:
        return self.results_path / "artifacts"

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{self.results_path / 'study.db'}"


# ---------------------------------------------------------------------------------------------
# validation


def _fail(where: str, value: Any, accepted: str) -> typing.NoReturn:
    raise SpecError(f"{where} = {value!r} is invalid; expected {accepted}")


def _check_positive(where: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        _fail(where, value, f"{'an integer' if integer else 'a number'} {bound}")


_RANGES = {
    "mux_norm": (0.0, None),
    "retrieval_fraction": (0.0, 1.0),
    "warmup_ratio": (0.0, 1.0),
    "droprate_init": (0.0, 1.0),
    "retrieval_target": (0.0, 1.0),
    "mask_probability": (0.0, 1.0),
    "lagrangian_warmup_ratio": (0.0, 1.0),
}
_NON_NEGATIVE = {
    "epochs", "weight_decay", "retrieval_loss_coeff", "lagrangian_warmup_epochs", "distill_layer_weight",
    "distill_pred_weight", "distill_ce_weight", "warmup", "max_retries", "steps", "examples",
}


def _convert(where: str, value: Any, annotation: Any) -> Any:
    """Convert one TOML value to the annotated type, or raise SpecError naming the field."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(where, value, inner)
    if origin is tuple:
        if not isinstance(value, list) or not value:
            _fail(where, value, "a non-empty list")
        return tuple(_convert(f"{where}[{i}]", v, args[0]) for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            _fail(where, value, "true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, value, "an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            _fail(where, value, "a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str) or not value:
            _fail(where, value, "a non-empty string")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            _fail(where, value, f"a table [{where}]")
        return _build(annotation, value, where)
    raise TypeError(f"unsupported annotation {annotation!r}")  # a bug in this module, not user input


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise SpecError(
            f"unknown key {prefix}{unknown[0]}; accepted keys{' in [' + where + ']' if where else ''}: "
            f"{', '.join(sorted(known))}"
        )
    if issubclass(cls, _Budgeted):
        given = [unit for unit in BUDGET_UNITS if unit in raw]
        if len(given) > 1:
            raise SpecError(
                f"[{where}] gives its length twice ({' and '.join(given)}); give one of {', '.join(BUDGET_UNITS)}"
            )
    kwargs = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        converted = _convert(key, value, hints[name])
        if converted is not None:
            _check_value(key, name, converted)
        kwargs[name] = converted
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = str(exc).split("argument")[-1].strip(": '")
        raise SpecError(f"missing required key {where + '.' if where else ''}{missing}") from None


def _check_value(key: str, name: str, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if name in _RANGES:
            low, high = _RANGES[name]
            if value < low or (high is not None and value > high):
                _fail(key, value, f"a number in [{low:g}, {high:g}]" if high is not None else f"a number >= {low:g}")
        elif name in _NON_NEGATIVE:
            _check_positive(key, value, allow_zero=True)
        elif name not in ("seed",):
            _check_positive(key, value, integer=isinstance(value, int))
    if name == "multiplexer" and value not in MULTIPLEXERS:
        _fail(key, value, f"one of {', '.join(MULTIPLEXERS)}")
    if name == "demultiplexer" and value not in DEMULTIPLEXERS:
        _fail(key, value, f"one of {', '.join(DEMULTIPLEXERS)}")
    if name == "readout" and value not in READOUTS:
        _fail(key, value, f"one of {', '.join(READOUTS)}")
    if name == "dtype" and value not in BENCH_DTYPES:
        _fail(key, value, f"one of {', '.join(BENCH_DTYPES)}")


def validate_mux_width(value: Any, where: str = "mux") -> int:
    """A multiplexing width: an integer >= 1 (the one check used by spec and CLI)."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            _fail(where, value, "an integer >= 1")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(where, value, "an integer >= 1")
    return value


def validate_sparsity(value: Any, where: str = "sparsity") -> float:
    """A target sparsity: a fraction with 0 <= s < 1 (the one check used by spec and CLI)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            _fail(where, value, "a number with 0 <= s < 1")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        _fail(where, value, "a number with 0 <= s < 1")
    return float(value)


def _check_grid(grid: GridSettings) -> GridSettings:
    mux = tuple(sorted({validate_mux_width(v, f"grid.mux[{i}]") for i, v in enumerate(grid.mux)}))
    sparsity = tuple(
        sorted({validate_sparsity(v, f"grid.sparsity[{i}]") for i, v in enumerate(grid.sparsity)})
    )
    return GridSettings(mux=mux, sparsity=sparsity)


_TRAINING_KEYS = {f.name for f in fields(TrainingSettings)}


def spec_from_dict(raw: dict[str, Any], source: str | None = None) -> SweepSpec:
    """Validate a parsed TOML document and build the frozen `SweepSpec`."""
    raw = dict(raw)
    accepted = sorted(_TRAINING_KEYS | {"name", "grid", "storage", "results_dir", "workers"})
    unknown = sorted(set(raw) - set(accepted))
    if unknown:
        raise SpecError(f"unknown key {unknown[0]}; accepted top-level keys: {', '.join(accepted)}")
    if "name" not in raw:
        raise SpecError("missing required key name (the sweep's name, e.g. name = \"demo\")")
    training_raw = {k: raw.pop(k) for k in list(raw) if k in _TRAINING_KEYS}
    models = _models_table(training_raw.pop("models")) if "models" in training_raw else ()
    training = dataclasses.replace(_build(TrainingSettings, training_raw, ""), models=models)
    grid_raw = raw.pop("grid", {})
    top = _build(
        SweepSpec,
        {**raw, "training": {}, "grid": {}},
        "",
    )
    grid = _check_grid(_convert("grid", grid_raw, GridSettings) if grid_raw else GridSettings())
    name = top.name
    if not all(c.isalnum() or c in "-_." for c in name):
        _fail("name", name, "letters, digits, '-', '_' or '.' (it names a folder)")
    if top.storage is not None and "://" not in top.storage:
        _fail("storage", top.storage, "an Optuna storage URL such as sqlite:///path/study.db or postgresql://...")
    _check_task_and_model(training)
    _check_corpus(training.pretrain.corpus)
    return dataclasses.replace(top, training=training, grid=grid, source=source)


def _models_table(raw: Any) -> tuple[tuple[int, str], ...]:
    """`[models]` (N = "checkpoint" entries) -> sorted (N, checkpoint) pairs."""
    example = 'a table of N = "checkpoint" entries, e.g. [models] 2 = "princeton-nlp/muxbert_base_..._2"'
    if not isinstance(raw, dict) or not raw:
        _fail("models", raw, example)
    entries = []
    for key, value in raw.items():
        mux = validate_mux_width(key, f"models.{key}")
        if not isinstance(value, str) or not value:
            _fail(f"models.{key}", value, "a model name: a preset, a hub id or a checkpoint folder")
        entries.append((mux, value))
    return tuple(sorted(entries))


def _check_task_and_model(training: TrainingSettings) -> None:
    # Task and model names are checked against their registries when those are importable; the
    # registries are the single source of what is accepted.
    from autoprumux.models.presets import resolve_model

    for model in (training.model, *(name for _, name in training.models)):
        resolve_model(model)
    try:
        from autoprumux.data import list_tasks
    except ImportError:
        return
    from pathlib import Path as _Path

    if training.task not in list_tasks() and not _Path(training.task).exists():
        raise SpecError(
            f"task = {training.task!r} is unknown; expected one of {', '.join(list_tasks())} or a path to a data file/folder"
        )


def _check_corpus(corpus: str | None) -> None:
    if corpus is not None and not (Path(corpus).is_file() or Path(corpus).is_dir()):
        _fail("pretrain.corpus", corpus, "an existing text file (one text per line) or a folder of .txt files")


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec file (TOML)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist (expected a TOML sweep spec)")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"spec file {str(path)!r} is not valid TOML: {exc}") from None
    return spec_from_dict(raw, source=str(path))


def settings_to_dict(obj: Any) -> dict[str, Any]:
    """A plain, JSON-serialisable dict of any settings dataclass (for hashing and metrics.json)."""
    return dataclasses.asdict(obj)
