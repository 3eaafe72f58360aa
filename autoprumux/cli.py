"""The `autoprumux` command line: parse arguments, call one library function, print, exit.

Run one configuration on this machine::

    autoprumux train --task synthetic-sentiment --model tiny --mux 2 --sparsity 0.7 --out runs/n2s07

Run a sweep with two local workers, or join it from other machines that share a PostgreSQL storage::

    autoprumux sweep sweeps/demo.toml --workers 2
    autoprumux worker sweeps/demo.toml --storage postgresql://user:pw@host/db

Then ask which configuration to deploy::

    autoprumux recommend --budget 3%

User mistakes print one line `autoprumux: error: ...` and exit with status 2. This is the only
module that exits; heavy libraries are imported inside the handlers so `recommend` starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from autoprumux.errors import AutoprumuxError


class _UsageError(AutoprumuxError):
    """An argparse error (unknown flag, missing argument), reported like every other mistake."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse hook
        raise _UsageError(f"{self.prog.split(' ', 1)[-1]}: {message}" if " " in self.prog else message)


def _mux(value: str) -> int:
    from autoprumux.spec import validate_mux_width

    return validate_mux_width(value, "--mux")


def _sparsity(value: str) -> float:
    from autoprumux.spec import validate_sparsity

    return validate_sparsity(value, "--sparsity")


def _positive_int(flag: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise _UsageError(f"{flag} = {value!r} is invalid; expected an integer >= 1")
        return number

    return parse


# ---------------------------------------------------------------------------------------------
# handlers: each calls the library and prints


def _cmd_train(args: argparse.Namespace) -> int:
    from autoprumux.train.pipeline import settings_from_args, train_configuration

    settings = settings_from_args(args)
    metrics = train_configuration(
        settings,
        mux=args.mux,
        sparsity=args.sparsity,
        out_dir=Path(args.out),
        device=args.device,
        teacher_dir=Path(args.teacher) if args.teacher else None,
    )
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from autoprumux.bench import benchmark_checkpoint, format_benchmark

    result = benchmark_checkpoint(
        Path(args.dir),
        batch_size=args.batch,
        seq_len=args.seq_len,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        threads=args.threads,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_benchmark(result))
    return 0


def _load_spec(args: argparse.Namespace):
    from autoprumux.spec import load_spec

    spec = load_spec(args.spec)
    if getattr(args, "storage", None):
        import dataclasses

        spec = dataclasses.replace(spec, storage=args.storage)
    return spec


def _cmd_sweep(args: argparse.Namespace) -> int:
    spec = _load_spec(args)
    if args.dry_run:
        from autoprumux.sweep import format_plan, plan_sweep

        print(format_plan(plan_sweep(spec)))
        return 0
    from autoprumux.sweep.engine import run_sweep

    summary = run_sweep(spec, workers=args.workers, device=args.device, progress=print)
    print(summary)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from autoprumux.sweep.engine import run_worker

    spec = _load_spec(args)
    print(run_worker(spec, device=args.device, progress=print))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from autoprumux.sweep.engine import format_status, sweep_status

    print(format_status(sweep_status(_load_spec(args))))
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from autoprumux.sweep.engine import open_dashboard

    open_dashboard(_load_spec(args), host=args.host, port=args.port, report=print)
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    raise _UsageError("fit is not available yet")


def _cmd_recommend(args: argparse.Namespace) -> int:
    raise _UsageError("recommend is not available yet")


def _cmd_suggest(args: argparse.Namespace) -> int:
    raise _UsageError("suggest is not available yet")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    raise _UsageError("evaluate is not available yet")


def _cmd_plot(args: argparse.Namespace) -> int:
    from autoprumux.meta import default_table_path
    from autoprumux.plots import plot_results

    table = args.results or default_table_path()
    paths = plot_results(table, Path(args.out), budget=args.budget)
    if not args.results:
        print(f"no --results given: using the newest table {table}")
    for path in paths:
        print(path)
    return 0


# ---------------------------------------------------------------------------------------------
# parser


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one (N, s) configuration through the pipeline")
    p.add_argument("--task", required=True, help="task name (see the README) or a data folder/file")
    p.add_argument("--model", help="tiny, minilm, a hub id or a local checkpoint (default: the spec's, else tiny)")
    p.add_argument("--mux", type=_mux, default=1, help="multiplexing width N >= 1 (default 1)")
    p.add_argument("--sparsity", type=_sparsity, default=0.0, help="target sparsity 0 <= s < 1 (default 0)")
    p.add_argument("--out", required=True, help="output directory (metrics.json and model/)")
    p.add_argument("--spec", help="take stage settings from this sweep spec (TOML)")
    p.add_argument("--epochs", type=float, help="fine-tuning epochs (overrides the spec/default)")
    p.add_argument("--train-examples", type=_positive_int("--train-examples"), help="cap on training examples")
    p.add_argument("--data-path", help="local data folder/file for local and GLUE tasks")
    p.add_argument("--teacher", help="an existing s = 0 run directory of the same N to prune from")
    p.add_argument("--device", help="cpu, cuda or cuda:K (default: cuda when available)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.set_defaults(handler=_cmd_train)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure throughput of a saved model")
    p.add_argument("dir", help="a run directory (with model/) or a model directory")
    p.add_argument("--batch", type=_positive_int("--batch"), default=64, help="sequences per batch (default 64)")
    p.add_argument("--seq-len", type=_positive_int("--seq-len"), default=48, help="tokens per sequence (default 48)")
    p.add_argument("--repeats", type=_positive_int("--repeats"), default=10, help="timed repeats (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up iterations (default 3)")
    p.add_argument("--threads", type=_positive_int("--threads"), help="CPU threads (default: all)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_bench)


def _add_sweep_commands(sub) -> None:
    p = sub.add_parser("sweep", help="run or resume a sweep of (N, s) configurations")
    p.add_argument("spec", help="sweep spec (TOML), e.g. sweeps/demo.toml")
    p.add_argument("--workers", type=_positive_int("--workers"), default=1, help="local worker processes")
    p.add_argument("--storage", help="Optuna storage URL (default: the spec's, else sqlite in results/)")
    p.add_argument("--device", help="cpu or cuda (default: one GPU per worker when GPUs exist)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (trials and stages) and exit")
    p.set_defaults(handler=_cmd_sweep)

    p = sub.add_parser("worker", help="join a sweep from another process or machine")
    p.add_argument("spec", help="sweep spec (TOML)")
    p.add_argument("--storage", required=True, help="the sweep's Optuna storage URL")
    p.add_argument("--device", help="cpu or cuda")
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser("status", help="done / running / waiting / failed trials of a sweep")
    p.add_argument("spec", help="sweep spec (TOML)")
    p.add_argument("--storage", help="Optuna storage URL (default: the spec's)")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("dashboard", help="open optuna-dashboard on the sweep's storage")
    p.add_argument("spec", help="sweep spec (TOML)")
    p.add_argument("--storage", help="Optuna storage URL (default: the spec's)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(handler=_cmd_dashboard)


def _add_meta_commands(sub) -> None:
    p = sub.add_parser("fit", help="fit the performance models and print their cross-validated errors")
    p.add_argument("--results", help="results table (default: the newest results/*/trials.csv)")
    p.set_defaults(handler=_cmd_fit)

    p = sub.add_parser("recommend", help="the fastest (N, s) within an accuracy-loss budget")
    p.add_argument("--budget", required=True, help="accuracy loss allowed: 3%% or 0.03")
    p.add_argument("--results", help="results table (default: the newest results/*/trials.csv)")
    p.set_defaults(handler=_cmd_recommend)

    p = sub.add_parser("suggest", help="the next configurations worth training")
    p.add_argument("--budget", required=True, help="accuracy loss allowed: 3%% or 0.03")
    p.add_argument("--n", type=_positive_int("--n"), default=3, help="how many (default 3)")
    p.add_argument("--results", help="results table (default: the newest results/*/trials.csv)")
    p.set_defaults(handler=_cmd_suggest)

    p = sub.add_parser("evaluate", help="how good the recommender is on a table (leave-k-out regret)")
    p.add_argument("--results", help="results table (default: the newest results/*/trials.csv)")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("plot", help="Pareto frontier and fitted-surface plots")
    p.add_argument("--results", help="results table (default: the newest results/*/trials.csv)")
    p.add_argument("--out", required=True, help="output directory for PNG and SVG files")
    p.add_argument("--budget", help="draw this budget's accuracy floor and recommendation, e.g. 3%%")
    p.set_defaults(handler=_cmd_plot)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and documentation)."""
    from autoprumux import __version__

    parser = _Parser(
        prog="autoprumux",
        description="Data multiplexing x structured pruning for BERT classifiers: sweep, fit, recommend.",
    )
    parser.add_argument("--version", action="version", version=f"autoprumux {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
    _add_bench(sub)
    _add_sweep_commands(sub)
    _add_meta_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except AutoprumuxError as exc:
        message = " ".join(str(exc).split())
        print(f"autoprumux: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autoprumux: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
