"""PruMUX's throughput grid at paper scale: BERT-base shape, N x s, fp32 and bf16, side by side.

No training is needed to measure speed: every (N, s) model has random weights and is compacted
from seeded random CoFi-like masks (heads, FFN dimensions, hidden dimensions and some whole
attention / FFN layers, in the proportions CoFi's pruned models show) through the project's own
compaction (`autoprumux.prune.compact_model`), then measured with the one throughput harness in
interleaved rounds. For each dtype it prints examples/s, the speedup over N = 1, s = 0, the
FLOPs-ideal speedup (analytic FLOPs per example) and the efficiency = measured / ideal.

    python benchmarks/paper_scale.py                        # on a GPU: 12 layers, d = 768, T = 128 (< 8 min)
    python benchmarks/paper_scale.py --scale cpu            # the CPU-sized form (4 layers, d = 256, T = 64)
    python benchmarks/paper_scale.py --check-precision      # bf16 compacted forward vs fp32, then exit

On several GPUs, run one process per GPU with `CUDA_VISIBLE_DEVICES`; each prints its own table.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

from autoprumux.bench import (
    TORCH_DTYPES,
    Comparison,
    compare_throughput,
    format_comparison,
    random_batch,
    resolve_device,
)
from autoprumux.models import MuxBertConfig, MuxBertForSequenceClassification
from autoprumux.prune import GateMasks, compact_model, full_prunable_parameter_count, measured_sparsity
from autoprumux.prune.size import prunable_parameter_count

#: Model shapes and harness settings of the two forms.
SCALES = {
    "paper": dict(
        model=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                   vocab_size=30522, max_position_embeddings=512),
        seq_len=128, batch=128, rounds=3, warmup=5, repeats=20,
    ),
    "cpu": dict(
        model=dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                   vocab_size=8000, max_position_embeddings=128),
        seq_len=64, batch=16, rounds=2, warmup=1, repeats=3,
    ),
}


def paper_config(scale: str, mux_width: int) -> MuxBertConfig:
    """The dense model of `scale` at N = `mux_width`, shaped as a converted MUX-PLM is (PruMUX's
    models): cls readout, 3 residual demux layers, the mixture through the embeddings again, no pooler."""
    return MuxBertConfig(
        **SCALES[scale]["model"], mux_width=mux_width, num_labels=2, readout="cls", demux_layers=3,
        demux_blocks="residual", mux_embed_pass=True, mux_mask_padding=False, mux_token_types=False, mux_pooler=False,
    )


def _keep(scores: torch.Tensor, count: int) -> torch.Tensor:
    mask = torch.zeros_like(scores)
    mask[scores.argsort(descending=True)[:count]] = 1.0
    return mask


def random_cofi_masks(config: MuxBertConfig, sparsity: float, seed: int) -> GateMasks:
    """Seeded random deterministic masks whose CoFi sparsity is as close to `sparsity` as the units allow.

    CoFi-like proportions: most hidden dimensions stay (1 - 0.1 s of them), whole attention layers
    go before whole FFN layers as s grows (round(0.4 L s^3) and round(0.2 L s^3)), and heads / FFN
    dimensions go by a random score with a random per-layer scale, so layers keep uneven widths.
    """
    generator = torch.Generator().manual_seed(seed)
    layers, heads, ffn, hidden = (config.num_hidden_layers, config.num_attention_heads,
                                  config.intermediate_size, config.hidden_size)
    hidden_mask = _keep(torch.rand(hidden, generator=generator), round(hidden * (1 - 0.1 * sparsity)))
    attention_layers = torch.ones(layers)
    attention_layers[torch.randperm(layers, generator=generator)[: round(0.4 * layers * sparsity**3)]] = 0.0
    ffn_layers = torch.ones(layers)
    ffn_layers[torch.randperm(layers, generator=generator)[: round(0.2 * layers * sparsity**3)]] = 0.0
    head_scores = torch.rand(layers, heads, generator=generator) * (0.5 + torch.rand(layers, 1, generator=generator))
    ffn_scores = torch.rand(layers, ffn, generator=generator) * (0.5 + torch.rand(layers, 1, generator=generator))
    full = full_prunable_parameter_count(config)

    def masks_at(threshold: float) -> GateMasks:
        return GateMasks(heads=(head_scores > threshold).float(), attention_layers=attention_layers,
                         ffn_dims=(ffn_scores > threshold).float(), ffn_layers=ffn_layers, hidden=hidden_mask)

    def sparsity_at(masks: GateMasks) -> float:
        kept_heads = (masks.heads.sum(-1) * attention_layers).tolist()
        kept_ffn = (masks.ffn_dims.sum(-1) * ffn_layers).tolist()
        return 1 - prunable_parameter_count(kept_heads, kept_ffn, int(hidden_mask.sum()), config.head_size) / full

    low, high = 0.0, float(max(head_scores.max(), ffn_scores.max()))
    for _ in range(40):  # bisection: sparsity grows with the threshold
        middle = (low + high) / 2
        low, high = (middle, high) if sparsity_at(masks_at(middle)) < sparsity else (low, middle)
    return masks_at(high)


def build_models(scale: str, mux_widths, sparsities, seed: int = 0) -> dict[str, MuxBertForSequenceClassification]:
    """Name -> model for every (N, s), N = 1, s = 0 first; one dense model per N, compacted per s."""
    models = {}
    for mux_width in sorted(mux_widths):
        torch.manual_seed(seed + mux_width)
        dense = MuxBertForSequenceClassification(paper_config(scale, mux_width)).eval()
        for sparsity in sorted(sparsities):
            model = dense if sparsity == 0 else compact_model(dense, random_cofi_masks(dense.config, sparsity, seed))
            models[f"N={mux_width:<2} s={sparsity:.2f} (measured {measured_sparsity(model):.3f})"] = model
    return models


def speedup_grid(comparison: Comparison, mux_widths, sparsities) -> str:
    """Speedup over N = 1, s = 0 as measured / FLOPs-ideal / N / (1 - s), one row per N, one column per s.

    FLOPs-ideal falls short of N / (1 - s) by what pruning and multiplexing do not shrink (the
    demultiplexer and classifier run per example, attention scores grow with T^2 per sequence);
    measured falls short of FLOPs-ideal by the work FLOPs do not count (embeddings, mixing,
    LayerNorms) and by smaller matrices running less efficiently (kernel launches, memory bound).
    """
    names = iter(comparison.names)
    lines = [f"{'measured / FLOPs-ideal / N/(1-s)':<34}" + "".join(f"{'s=' + format(s, '.2f'):>24}"
                                                                for s in sorted(sparsities))]
    for mux_width in sorted(mux_widths):
        cells = []
        for sparsity in sorted(sparsities):
            name = next(names)
            cells.append(f"{comparison.speedup(name):.2f}x / {comparison.ideal_speedup(name):.1f}x / "
                         f"{mux_width / (1 - sparsity):.0f}x")
        lines.append(f"{'N=' + str(mux_width):<34}" + "".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def time_segments(model, *, batch: int, seq_len: int, device: torch.device, repeats: int = 5) -> list[float]:
    """Median seconds per batch in: embeddings + multiplexer, the encoder layers, demultiplexer + classifier.

    Forward hooks mark the encoder's first input and last output (synchronised on CUDA), so the
    three parts add up to one forward pass; `model` is measured in its own dtype, on `device`.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    marks: dict[str, float] = {}

    def mark(name):
        def hook(*_):
            sync()
            marks[name] = time.perf_counter()
        return hook

    layers = model.to(device).eval().bert.encoder.layer
    handles = [layers[0].register_forward_pre_hook(mark("encoder")), layers[-1].register_forward_hook(mark("head"))]
    inputs = random_batch(model, batch, seq_len, device, seed=0)
    parts: list[list[float]] = []
    try:
        with torch.inference_mode():
            for index in range(repeats + 1):
                sync()
                start = time.perf_counter()
                model(**inputs)
                sync()
                if index:  # the first pass warms up
                    parts.append([marks["encoder"] - start, marks["head"] - marks["encoder"],
                                  time.perf_counter() - marks["head"]])
    finally:
        for handle in handles:
            handle.remove()
    return [statistics.median(p[i] for p in parts) for i in range(3)]


def format_segments(models: dict, per_mux: int, settings: dict, device: torch.device) -> str:
    """Where the time goes, per example, for the grid's corners (models in N-major order, `per_mux` s each)."""
    names = list(models)
    corners = dict.fromkeys([names[0], names[per_mux - 1], names[-per_mux], names[-1]])
    lines = [f"{'per example (us)':<36} {'embed+mux':>10} {'encoder':>10} {'demux+head':>11} {'encoder share':>14}"]
    for name in corners:
        model = models[name]
        seconds = time_segments(model, batch=settings["batch"], seq_len=settings["seq_len"], device=device)
        examples = settings["batch"] * model.config.mux_width
        micro = [1e6 * t / examples for t in seconds]
        lines.append(f"{name:<36} {micro[0]:>10.1f} {micro[1]:>10.1f} {micro[2]:>11.1f} {seconds[1] / sum(seconds):>13.0%}")
    return "\n".join(lines)


def check_precision(scale: str, device: torch.device, dtype: str = "bf16", mux_width: int = 2,
                    sparsity: float = 0.9) -> tuple[bool, str]:
    """Does the compacted (N, s) model in `dtype` give the fp32 logits within that dtype's tolerance?

    Tolerance: relative L2 error of the logits under 2% and the same predicted label for at least
    95% of the examples (random weights put many logits close together, so a few may flip).
    """
    models = build_models(scale, [mux_width], [sparsity])
    model = next(iter(models.values())).to(device)
    generator = torch.Generator().manual_seed(1)
    shape = (32, mux_width, SCALES[scale]["seq_len"])
    inputs = dict(input_ids=torch.randint(5, model.config.vocab_size, shape, generator=generator).to(device),
                  attention_mask=torch.ones(shape, dtype=torch.long, device=device))
    with torch.inference_mode():
        reference = model(**inputs).logits.float()
        half = copy.deepcopy(model).to(TORCH_DTYPES[dtype])(**inputs).logits.float()
    error = float((half - reference).norm() / reference.norm())
    agreement = float((half.argmax(-1) == reference.argmax(-1)).float().mean())
    ok = error < 0.02 and agreement >= 0.95
    return ok, (f"{dtype} compacted forward (N={mux_width}, s={sparsity}, {scale} shape, {device.type}): relative "
                f"error {error:.2e}, same label {agreement:.1%} -> {'OK' if ok else 'MISMATCH'}")


def run(args: argparse.Namespace) -> None:
    """Build the grid's models and print one comparison per dtype as it is measured."""
    device = resolve_device(args.device)
    scale = args.scale or ("paper" if device.type == "cuda" else "cpu")
    settings = {**SCALES[scale], **{k: v for k, v in vars(args).items() if k in SCALES[scale] and v is not None}}
    started = time.perf_counter()
    models = build_models(scale, args.mux, args.sparsity)
    shape = SCALES[scale]["model"]
    print(f"# benchmarks/paper_scale.py: {scale} scale, {shape['num_hidden_layers']} layers, d = "
          f"{shape['hidden_size']}, T = {settings['seq_len']}, random weights, seeded random CoFi-like masks; "
          f"models built in {time.perf_counter() - started:.0f} s", flush=True)
    for dtype in args.dtypes:
        cast = {name: model if dtype == "fp32" else copy.deepcopy(model).to(TORCH_DTYPES[dtype])
                for name, model in models.items()}
        comparison = compare_throughput(
            cast, rounds=settings["rounds"], batch_size=settings["batch"], seq_len=settings["seq_len"],
            warmup=settings["warmup"], repeats=settings["repeats"], device=device, threads=args.threads, dtype=dtype,
        )
        print(f"\n## {dtype}\n{format_comparison(comparison)}\n\n{speedup_grid(comparison, args.mux, args.sparsity)}"
              f"\n\n{format_segments(cast, len(set(args.sparsity)), settings, device)}", flush=True)
        del cast
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), help="paper (GPU) or cpu (default: paper on CUDA)")
    parser.add_argument("--mux", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.6, 0.8, 0.9, 0.95])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(TORCH_DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, help="sequences per batch (default: the scale's)")
    parser.add_argument("--seq-len", dest="seq_len", type=int, help="tokens per sequence (default: the scale's)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default=None)
    parser.add_argument("--check-precision", action="store_true", help="only compare a bf16 compacted forward with fp32")
    args = parser.parse_args(argv)
    if args.check_precision:
        device = resolve_device(args.device)
        ok, report = check_precision(args.scale or ("paper" if device.type == "cuda" else "cpu"), device)
        print(report)
        return 0 if ok else 1
    if 1 not in args.mux or 0.0 not in args.sparsity:
        parser.error("the grid must contain N = 1 and s = 0 (speedups are over that model)")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
