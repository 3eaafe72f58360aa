"""The throughput harness: one honest way to measure examples/s, used by train, sweep and bench.

A fixed batch of B sequences, each carrying N multiplexed examples, of T tokens (no padding: the
harness keeps fixed shapes); `warmup` untimed forward passes; `repeats` timed ones under
`torch.inference_mode()`, synchronised on CUDA, with a fixed and recorded CPU thread count, in the
numeric type `dtype` (fp32, or bf16 / fp16 weights and activations, as a GPU deployment runs).
Throughput is original examples per second (B * N / seconds per batch); we report the median, the interquartile range and min/max, the
latency per batch, peak memory, parameter count, analytic FLOPs per example and a hardware
fingerprint. Token ids are drawn from the model's vocabulary: content does not change cost.

    from autoprumux.bench import measure_throughput
    result = measure_throughput(model, batch_size=64, seq_len=48)
    print(result.examples_per_second, result.flops_per_example)

Speed claims compare results measured side by side in one run (see benchmarks/speedup.py).
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from autoprumux.machine import cpu_cores, load_average
from autoprumux.spec import BenchSettings
from autoprumux.train.device import resolve_device

_DEFAULTS = BenchSettings()  # the harness settings a spec gets when it names none

#: A measurement whose interquartile range exceeds this share of its median is flagged as busy.
BUSY_SPREAD = 0.25

#: The numeric types the harness measures in, by the names specs and `bench --dtype` use.
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class BenchResult:
    """Throughput of one model under one harness setting. Rates are examples/s, times seconds."""

    examples_per_second: float  # median over repeats
    spread_iqr: float  # interquartile range of examples/s
    min_examples_per_second: float
    max_examples_per_second: float
    latency_s: float  # median seconds per batch of `batch_size` sequences
    peak_memory_bytes: int
    params: int
    flops_per_example: float  # analytic, forward pass, per original input
    mux_width: int
    batch_size: int
    seq_len: int
    warmup: int
    repeats: int
    threads: int
    device: str  # "cpu" or "cuda"
    hardware: str
    dtype: str = "fp32"  # fp32, bf16 or fp16
    load_average: float | None = None  # 1-minute load of the machine right after measuring (CPU)
    cpu_cores: int = 1  # cores this process may run on

    def to_dict(self) -> dict:
        return {**asdict(self), "busy": self.busy_reason()}

    def busy_reason(self) -> str | None:
        """Why this measurement says the machine was busy (so its figure is not to be trusted), or None.

        A spread (IQR) over `BUSY_SPREAD` of the median means the repeats did not see the same
        machine; a CPU load above the cores means other processes competed for them.
        """
        reasons = []
        if self.spread_iqr > BUSY_SPREAD * self.examples_per_second:
            reasons.append(f"spread {self.spread_iqr / self.examples_per_second:.0%} of the median")
        if self.device == "cpu" and self.load_average is not None and self.load_average > self.cpu_cores + 0.5:
            reasons.append(f"load {self.load_average:.1f} on {self.cpu_cores} cores")
        return "; ".join(reasons) or None

    def to_metrics(self) -> dict:
        """The results-table columns this measurement fills."""
        return {
            "throughput": self.examples_per_second,
            "throughput_spread": self.spread_iqr,
            "flops_per_example": self.flops_per_example,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "params": self.params,
            "device": self.device,
            "hardware": self.hardware,
            "dtype": self.dtype,
            "throughput_busy": int(self.busy_reason() is not None),
        }


def hardware_fingerprint(device: torch.device, threads: int) -> str:
    """Device name, CPU model, thread count and torch version, as one line. The CPU's family,
    model and stepping follow its name where /proc/cpuinfo gives them: a virtual machine may name
    its CPU only "AMD EPYC", and two such hosts trained the demo to different accuracies."""
    cpu, ids = platform.processor() or platform.machine(), {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = (part.strip() for part in line.partition(":"))
                if not key:
                    break  # the first processor's block is enough
                if key == "model name":
                    cpu = value
                elif key in ("cpu family", "model", "stepping"):
                    ids[key.removeprefix("cpu ")] = value
    except OSError:
        pass
    if ids:
        cpu += " (" + " ".join(f"{k} {v}" for k, v in ids.items()) + ")"
    parts = [f"cpu {cpu}", f"{threads} threads"]
    if device.type == "cuda":
        parts.insert(0, f"cuda {torch.cuda.get_device_name(device)}")
    parts.append(f"torch {torch.__version__}")
    return ", ".join(parts)


def _mux_width(model: nn.Module) -> int:
    return int(getattr(model.config, "mux_width", 1))


def _encoder_length(model: nn.Module, seq_len: int) -> int:
    """Positions the encoder sees: the `index` demultiplexer prepends N prefix positions."""
    config = model.config
    if _mux_width(model) > 1 and getattr(config, "demultiplexer", None) == "index":
        return seq_len + _mux_width(model)
    return seq_len


def random_batch(model: nn.Module, batch_size: int, seq_len: int, device: torch.device, seed: int) -> dict:
    """The harness's input: `batch_size` sequences of N x `seq_len` random tokens, no padding."""
    generator = torch.Generator().manual_seed(seed)
    vocab = int(model.config.vocab_size)
    shape = (batch_size, _mux_width(model), seq_len)
    input_ids = torch.randint(5 if vocab > 5 else 0, vocab, shape, generator=generator)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones(shape, dtype=torch.long, device=device),
        "token_type_ids": torch.zeros(shape, dtype=torch.long, device=device),
    }


def count_flops(model: nn.Module, seq_len: int) -> float:
    """Analytic forward FLOPs per original example at sequence length `seq_len`.

    Counts 2 FLOPs per multiply-add of every matrix product the classification forward pass
    performs: each `nn.Linear` call (2 * in * out per row it is applied to), the keyed
    demultiplexer's split first layer, and, per attention layer, the score and context products
    (4 * heads * T'^2 * d_head). Elementwise work
    (activations, LayerNorm, the multiplexer's Hadamard products and mean) is not counted. The
    count is taken from one forward pass of a single sequence on the model's own shapes, so it is
    exact and deterministic for the architecture, including compacted per-layer shapes.
    """
    total = 0.0
    handles = []

    def linear_hook(module: nn.Linear, inputs, output) -> None:
        nonlocal total
        rows = inputs[0].numel() // module.in_features
        total += 2.0 * rows * module.in_features * module.out_features

    def attention_hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        hidden = inputs[0]
        heads = module.query.out_features // module.attention_head_size
        length = hidden.shape[-2]
        rows = hidden.numel() // (hidden.shape[-1] * length)
        total += 4.0 * rows * heads * length * length * module.attention_head_size

    def keyed_demux_hook(module: nn.Module, args, kwargs, output) -> None:
        # The keyed demultiplexers apply their first Linear with F.linear on its key and state
        # column blocks (keys once per slot, states once per sequence, or once per position for
        # the instance_mean readout), so no Linear hook sees it.
        nonlocal total
        hidden = args[0]
        first, sequences = module.first, hidden.shape[0]
        key_rows = module.mux_width * (1 if hasattr(module, "keys") else sequences)
        positions = hidden.shape[1] - module.prefix_length if kwargs.get("mask") is not None else 1
        state_size = first.in_features - module.key_size
        total += 2.0 * first.out_features * (key_rows * module.key_size + sequences * positions * state_size)

    for module in model.modules():
        if hasattr(module, "first") and hasattr(module, "key_size"):
            handles.append(module.register_forward_hook(keyed_demux_hook, with_kwargs=True))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif hasattr(module, "query") and hasattr(module, "attention_head_size"):
            handles.append(module.register_forward_hook(attention_hook))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(**random_batch(model, 1, seq_len, device, seed=0))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total / _mux_width(model)


def bench_options(settings: BenchSettings) -> dict:
    """The keyword arguments of `measure_throughput` that a spec's `[bench]` settings give."""
    return dict(batch_size=settings.batch_size, seq_len=settings.seq_len, warmup=settings.warmup,
                repeats=settings.repeats, threads=settings.threads, dtype=settings.dtype)


def cast_model(model: nn.Module, dtype: str) -> nn.Module:
    """`model` in numeric type `dtype` (fp32, bf16, fp16): itself when it already is, else a cast copy."""
    torch_dtype = TORCH_DTYPES[dtype]
    if next(model.parameters()).dtype == torch_dtype:
        return model
    return copy.deepcopy(model).to(torch_dtype)


@contextmanager
def _cpu_threads(threads: int):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # process peak RSS
    except ImportError:  # pragma: no cover - not on Linux
        return 0


def measure_throughput(
    model: nn.Module,
    *,
    batch_size: int = _DEFAULTS.batch_size,
    seq_len: int = _DEFAULTS.seq_len,
    warmup: int = _DEFAULTS.warmup,
    repeats: int = _DEFAULTS.repeats,
    device: str | torch.device | None = None,
    threads: int | None = None,
    dtype: str = _DEFAULTS.dtype,
    seed: int = 0,
) -> BenchResult:
    """Measure inference throughput of `model` in examples/s (median of `repeats` timed batches).

    The model is moved to `device` and put in eval mode; for a `dtype` other than its own
    (fp32, bf16 or fp16), a cast copy is measured and `model` keeps its weights. On CPU the thread
    count is fixed to `threads` (default: all cores) for the measurement and recorded.
    """
    device = resolve_device(device)
    threads = threads or torch.get_num_threads() or os.cpu_count() or 1
    model = cast_model(model.to(device), dtype).eval()
    flops = count_flops(model, seq_len)
    batch = random_batch(model, batch_size, seq_len, device, seed)
    examples = batch_size * _mux_width(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings: list[float] = []
    with _cpu_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            model(**batch)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(**batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings.append(time.perf_counter() - start)
    rates = [examples / t for t in timings]
    return BenchResult(
        examples_per_second=statistics.median(rates),
        spread_iqr=_quantile(rates, 0.75) - _quantile(rates, 0.25),
        min_examples_per_second=min(rates),
        max_examples_per_second=max(rates),
        latency_s=statistics.median(timings),
        peak_memory_bytes=_peak_memory(device),
        params=sum(p.numel() for p in model.parameters()),
        flops_per_example=flops,
        mux_width=_mux_width(model),
        batch_size=batch_size,
        seq_len=seq_len,
        warmup=warmup,
        repeats=repeats,
        threads=threads,
        device=device.type,
        hardware=hardware_fingerprint(device, threads),
        dtype=dtype,
        load_average=load_average(),
        cpu_cores=cpu_cores(),
    )



def benchmark_checkpoint(path: Path, **options) -> BenchResult:
    """Measure a saved model: a run directory (with `model/`) or a model directory itself."""
    return measure_throughput(load_checkpoint_model(path), **options)


def load_checkpoint_model(path: Path):
    """The model saved at a run directory (with `model/`) or a model directory itself."""
    from autoprumux.models import load_model
    from autoprumux.models.presets import checkpoint_model_dir

    return load_model(checkpoint_model_dir(path))


@dataclass(frozen=True)
class Comparison:
    """Models measured side by side: `rounds[name]` holds one `BenchResult` per interleaved round."""

    names: tuple[str, ...]
    rounds: dict[str, list[BenchResult]]

    def examples_per_second(self, name: str) -> float:
        """Median over rounds of each round's median examples/s."""
        return statistics.median(r.examples_per_second for r in self.rounds[name])

    def speedup(self, name: str, reference: str | None = None) -> float:
        """Measured examples/s of `name` over that of `reference` (default: the first model)."""
        return self.examples_per_second(name) / self.examples_per_second(reference or self.names[0])

    def ideal_speedup(self, name: str, reference: str | None = None) -> float:
        """The speedup the analytic FLOPs per example promise (reference FLOPs / model FLOPs)."""
        reference = reference or self.names[0]
        return self.rounds[reference][0].flops_per_example / self.rounds[name][0].flops_per_example


def compare_throughput(
    models: dict[str, nn.Module], *, rounds: int = 3, report: Callable[[str], None] | None = None, **options
) -> Comparison:
    """Measure several models interleaved (each once per round, `rounds` rounds) with
    `measure_throughput(**options)`, so that drifting machine load hits them alike. Speed claims
    are ratios from one such run. `report` hears one line per finished round, with the time left."""
    results: dict[str, list[BenchResult]] = {name: [] for name in models}
    started = time.perf_counter()
    for done in range(1, rounds + 1):
        for name, model in models.items():
            results[name].append(measure_throughput(model, **options))
        if report is not None:
            left = (time.perf_counter() - started) / done * (rounds - done)
            report(f"round {done}/{rounds} measured; about {left:.0f} s left")
    return Comparison(tuple(models), results)


def format_comparison(comparison: Comparison) -> str:
    """One line per model: examples/s (with its spread over rounds), measured and ideal speedup over
    the first model, and efficiency = measured / ideal."""
    first = comparison.rounds[comparison.names[0]][0]
    lines = [
        f"{len(next(iter(comparison.rounds.values())))} interleaved rounds x {first.repeats} repeats, batch "
        f"{first.batch_size} sequences of {first.seq_len} tokens, {first.dtype}; {first.hardware}",
        f"{'model':<40} {'N':>3} {'MFLOPs/ex':>10} {'examples/s':>12} {'spread':>7} {'speedup':>8} {'ideal':>7} "
        f"{'effic.':>7}",
    ]
    for name in comparison.names:
        rates = [r.examples_per_second for r in comparison.rounds[name]]
        rate = comparison.examples_per_second(name)
        speedup, ideal = comparison.speedup(name), comparison.ideal_speedup(name)
        label = name if len(name) <= 40 else "..." + name[-37:]
        lines.append(
            f"{label:<40} {comparison.rounds[name][0].mux_width:>3} "
            f"{comparison.rounds[name][0].flops_per_example / 1e6:>10.2f} {rate:>12,.0f} "
            f"{(max(rates) - min(rates)) / rate:>6.0%} {speedup:>7.2f}x {ideal:>6.2f}x {speedup / ideal:>6.0%}"
        )
    busy = sorted({reason for runs in comparison.rounds.values() for r in runs if (reason := r.busy_reason())})
    if busy:
        lines.append(f"warning: the machine was busy in some rounds ({busy[0]}{'; ...' if len(busy) > 1 else ''}): "
                     "read the ratios with care, or measure again on a quiet machine")
    return "\n".join(lines)


def format_benchmark(result: BenchResult) -> str:
    """A short human-readable report of one measurement."""
    return "\n".join(
        [
            f"throughput   {result.examples_per_second:,.1f} examples/s (median of {result.repeats}; "
            f"IQR {result.spread_iqr:,.1f}, min {result.min_examples_per_second:,.1f}, "
            f"max {result.max_examples_per_second:,.1f})",
            f"latency      {result.latency_s * 1e3:.2f} ms per batch of {result.batch_size} sequences x "
            f"N={result.mux_width}, length {result.seq_len}",
            f"FLOPs        {result.flops_per_example / 1e6:,.2f} MFLOPs per example (analytic)",
            f"dtype        {result.dtype}",
            f"params       {result.params:,}",
            f"peak memory  {result.peak_memory_bytes / 2**20:,.1f} MiB",
            f"hardware     {result.hardware}",
        ]
        + ([f"warning: the machine was busy ({result.busy_reason()}): measure again on a quiet machine"]
           if result.busy_reason() else [])
    )
