"""Speedup of multiplexing x pruning, measured side by side in one run (no training needed).

Builds compacted models of chosen (N, s) shapes with random weights, measures them interleaved
with the one throughput harness (`autoprumux.bench`), and prints examples/s, the ratio to the
N = 1 / s = 0 model, the ideal ratio from analytic FLOPs, and efficiency = measured / ideal
(the MFU-like number: how much of the compute saving turns into speed).

    python benchmarks/speedup.py                                  # tiny preset, this CPU
    python benchmarks/speedup.py --preset bert-base-shape --device cuda --batch 128 --seq-len 128 --dtype bf16

A pruned shape for target s keeps a fraction of the hidden size and, in every layer, the same
fraction of heads and FFN dimensions, chosen so that CoFi's sparsity count (autoprumux.prune.size)
lands as close to s as the integer shapes allow; the measured sparsity is printed.
"""

from __future__ import annotations

import argparse
import sys

import torch

from autoprumux.bench import TORCH_DTYPES, compare_throughput, format_comparison
from autoprumux.models import MuxBertConfig, MuxBertForSequenceClassification
from autoprumux.models.presets import SCRATCH_PRESETS
from autoprumux.prune.size import full_prunable_parameter_count, measured_sparsity, prunable_parameter_count
from autoprumux.train.device import resolve_device


def pruned_shape(config: MuxBertConfig, sparsity: float) -> dict:
    """`compact_*` fields of a uniformly pruned encoder whose CoFi sparsity is closest to `sparsity`."""
    if sparsity == 0:
        return {}
    layers, heads, ffn, hidden = (
        config.num_hidden_layers, config.num_attention_heads, config.intermediate_size, config.hidden_size,
    )
    full = full_prunable_parameter_count(config)
    best = None
    for kept_hidden in range(hidden, 0, -max(1, hidden // 32)):
        for kept_heads in range(heads, 0, -1):
            # FFN dims that make the count hit the target for this hidden size and head count
            budget = (1 - sparsity) * full / kept_hidden - 4 * config.head_size * kept_heads * layers
            kept_ffn = min(ffn, max(0, round(budget / (2 * layers))))
            size = prunable_parameter_count([kept_heads] * layers, [kept_ffn] * layers, kept_hidden, config.head_size)
            error = abs(1 - size / full - sparsity)
            # prefer a wide hidden size and balanced heads/FFN among near-equal fits
            balance = abs(kept_heads / heads - kept_ffn / ffn)
            score = (round(error, 3), balance, -kept_hidden)
            if best is None or score < best[0]:
                best = (score, kept_hidden, kept_heads, kept_ffn)
    _, kept_hidden, kept_heads, kept_ffn = best
    return {
        "compact_hidden_size": kept_hidden,
        "compact_heads": [kept_heads] * layers,
        "compact_intermediate": [kept_ffn] * layers,
    }


def build_random_model(preset: str, mux_width: int, sparsity: float, vocab_size: int = 8000):
    base = MuxBertConfig(**SCRATCH_PRESETS[preset], vocab_size=vocab_size, mux_width=mux_width, num_labels=2)
    config = MuxBertConfig(**{**base.to_dict(), **pruned_shape(base, sparsity)})
    torch.manual_seed(0)
    return MuxBertForSequenceClassification(config).eval()


def run(args: argparse.Namespace) -> str:
    points = [(n, s) for n in args.mux for s in args.sparsity]
    if (1, 0.0) in points:  # the reference goes first: speedups are over N = 1, s = 0
        points.insert(0, points.pop(points.index((1, 0.0))))
    models = {f"N={n} s={s:.2f} (measured s={measured_sparsity(m):.3f})": m
              for (n, s), m in ((p, build_random_model(args.preset, *p)) for p in points)}
    comparison = compare_throughput(
        models, rounds=args.rounds, batch_size=args.batch, seq_len=args.seq_len, warmup=args.warmup,
        repeats=args.repeats, device=resolve_device(args.device), threads=args.threads, dtype=args.dtype,
    )
    return f"# benchmarks/speedup.py: preset {args.preset}\n" + format_comparison(comparison)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(SCRATCH_PRESETS))
    parser.add_argument("--mux", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.5, 0.7, 0.9])
    parser.add_argument("--batch", type=int, default=64, help="sequences per batch")
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", choices=sorted(TORCH_DTYPES), default="fp32")
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
