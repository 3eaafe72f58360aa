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
import errno
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


def _non_negative_float(flag: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number >= 0 or number == float("inf"):
            raise _UsageError(f"{flag} = {value!r} is invalid; expected a number of seconds >= 0")
        return number

    return parse


# ---------------------------------------------------------------------------------------------
# handlers: each calls the library and prints


def _to_stderr(message: str) -> None:
    """Progress goes to stderr, so stdout stays the result (e.g. `--json`)."""
    print(message, file=sys.stderr, flush=True)


def _cmd_train(args: argparse.Namespace) -> int:
    from autoprumux.machine import yield_threads_if_busy

    busy = yield_threads_if_busy()  # before torch starts its threads; said at the end, so an error stays one line
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
    if busy:
        _to_stderr(f"warning: it trained while {busy}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from autoprumux.models.presets import checkpoint_model_dir

    for path in args.dir:  # every path checked before torch loads
        checkpoint_model_dir(path)
    from autoprumux.bench import (
        benchmark_checkpoint,
        compare_throughput,
        format_benchmark,
        format_comparison,
        load_checkpoint_model,
    )

    options = dict(batch_size=args.batch, seq_len=args.seq_len, repeats=args.repeats, warmup=args.warmup,
                   device=args.device, threads=args.threads, dtype=args.dtype)
    if len(args.dir) == 1:
        result = benchmark_checkpoint(Path(args.dir[0]), **options)
        print(json.dumps(result.to_dict(), indent=2) if args.json else format_benchmark(result))
        return 0
    models = {name: load_checkpoint_model(Path(name)) for name in args.dir}
    comparison = compare_throughput(models, rounds=args.rounds, report=_to_stderr, **options)
    if args.json:
        print(json.dumps({name: {"examples_per_second": comparison.examples_per_second(name),
                                 "speedup": comparison.speedup(name), "ideal_speedup": comparison.ideal_speedup(name),
                                 "rounds": [r.to_dict() for r in comparison.rounds[name]]}
                          for name in comparison.names}, indent=2))
    else:
        print(format_comparison(comparison))
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
    if args.remeasure and args.repeat:
        raise _UsageError("--repeat trains and --remeasure trains nothing; give one of them")
    if args.dry_run:
        from autoprumux.sweep import format_plan, plan_sweep
        from autoprumux.sweep.study import check_repeats

        plan = plan_sweep(spec)
        check_repeats(plan, args.repeat)
        print(format_plan(plan))
        for mux, sparsity in args.repeat:
            print(f"and one more training of N={mux}, s={sparsity:g} with the next seed (every stage trained again)")
        return 0
    if args.remeasure:
        from autoprumux.sweep.engine import remeasure_sweep

        remeasure_sweep(spec, rounds=args.rounds, device=args.device, progress=print)
        return 0
    from autoprumux.sweep.engine import run_sweep

    summary = run_sweep(spec, workers=args.workers, device=args.device, progress=print, repeats=tuple(args.repeat))
    print(summary)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from autoprumux.sweep.engine import run_worker

    spec = _load_spec(args)
    print(run_worker(spec, device=args.device, progress=print, wait_s=args.wait))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from autoprumux.sweep.engine import format_status, sweep_status

    print(format_status(sweep_status(_load_spec(args))))
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from autoprumux.sweep.engine import open_dashboard

    open_dashboard(_load_spec(args), host=args.host, port=args.port, report=print)
    return 0


def _meta_results(args: argparse.Namespace):
    """The results table of a meta command and a note when it was found by default."""
    from autoprumux.meta.results import default_table_path, load_results

    path = args.results or default_table_path()
    note = [] if args.results else [f"no --results given: using the newest table {path}"]
    return load_results(path, baseline_accuracy=getattr(args, "baseline_accuracy", None)), note


def _print_meta(args: argparse.Namespace, notes: list[str], text: str, payload: dict | None = None) -> int:
    # With --json, stdout carries exactly one JSON object; the notes go to stderr.
    if getattr(args, "json", False) and payload is not None:
        for line in notes:
            print(line, file=sys.stderr)
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join([*notes, text]))
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from autoprumux.errors import TableError
    from autoprumux.meta.render import format_fit
    from autoprumux.meta.selection import fit_performance_models, models_path, save_models

    results, notes = _meta_results(args)
    models = fit_performance_models(results)
    try:
        path = save_models(models, models_path(results))
    except OSError as exc:
        raise TableError(f"cannot save the models to {str(models_path(results))!r}: {exc.strerror or exc}") from None
    return _print_meta(args, notes, f"{format_fit(models)}\nsaved: {path}", {**models.summary(), "saved": str(path)})


def _cmd_recommend(args: argparse.Namespace) -> int:
    from autoprumux.meta.budget import parse_budget
    from autoprumux.meta.optimizer import check_confidence, load_models_for_recommend, recommend
    from autoprumux.meta.render import format_recommendation

    budget, confidence = parse_budget(args.budget), check_confidence(args.confidence)
    results, notes = _meta_results(args)
    models, status = load_models_for_recommend(results)
    rec = recommend(
        results,
        budget,
        models=models,
        confidence=confidence,
        relative=args.relative,
        mux_choices=args.mux_choices,
        sparsity_choices=args.sparsity_choices,
    )
    return _print_meta(args, [*notes, status], format_recommendation(rec), rec.to_dict())


def _cmd_suggest(args: argparse.Namespace) -> int:
    from autoprumux.meta.budget import parse_budget
    from autoprumux.meta.optimizer import check_confidence
    from autoprumux.meta.render import format_suggestions
    from autoprumux.meta.selection import load_or_fit_models
    from autoprumux.meta.suggestion import suggest

    budget, confidence = parse_budget(args.budget), check_confidence(args.confidence)
    results, notes = _meta_results(args)
    models, status = load_or_fit_models(results)
    sug = suggest(
        results,
        budget,
        n=args.n,
        models=models,
        confidence=confidence,
        relative=args.relative,
        mux_choices=args.mux_choices,
        sparsity_choices=args.sparsity_choices,
        repeats=args.repeats,
    )
    return _print_meta(args, [*notes, status], format_suggestions(sug), sug.to_dict())


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from autoprumux.meta.budget import parse_budget
    from autoprumux.meta.evaluation import evaluate
    from autoprumux.meta.optimizer import check_confidence
    from autoprumux.meta.render import format_evaluation

    budgets = [parse_budget(b) for b in args.budgets.split(",")]
    confidence = check_confidence(args.confidence)
    results, notes = _meta_results(args)
    ev = evaluate(
        results,
        budgets=budgets,
        holdout=args.holdout,
        n_splits=args.splits,
        confidence=confidence,
        relative=args.relative,
        seed=args.seed,
    )
    return _print_meta(args, notes, format_evaluation(ev), ev.to_dict())


def _cmd_plot(args: argparse.Namespace) -> int:
    from autoprumux.meta import default_table_path
    from autoprumux.plots import plot_results

    table = args.results or default_table_path()
    paths = plot_results(table, Path(args.out), budget=args.budget, confidence=args.confidence, relative=args.relative)
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
    from autoprumux.spec import BENCH_DTYPES, BenchSettings

    defaults = BenchSettings()
    p = sub.add_parser(
        "bench", help="measure throughput of a saved model, or of several side by side (speedups over the first)"
    )
    p.add_argument("dir", nargs="+", help="run directories (with model/) or model directories")
    p.add_argument("--rounds", type=_positive_int("--rounds"), default=3,
                   help="interleaved rounds when comparing several models (default 3)")
    p.add_argument("--batch", type=_positive_int("--batch"), default=defaults.batch_size,
                   help=f"sequences per batch (default {defaults.batch_size})")
    p.add_argument("--seq-len", type=_positive_int("--seq-len"), default=defaults.seq_len,
                   help=f"tokens per sequence (default {defaults.seq_len})")
    p.add_argument("--repeats", type=_positive_int("--repeats"), default=defaults.repeats,
                   help=f"timed repeats (default {defaults.repeats})")
    p.add_argument("--warmup", type=int, default=defaults.warmup,
                   help=f"untimed warm-up iterations (default {defaults.warmup})")
    p.add_argument("--threads", type=_positive_int("--threads"), help="CPU threads (default: all)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", choices=BENCH_DTYPES, default=defaults.dtype,
                   help=f"numeric type of weights and activations (default {defaults.dtype})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_bench)


def _add_sweep_commands(sub) -> None:
    p = sub.add_parser("sweep", help="run or resume a sweep of (N, s) configurations")
    p.add_argument("spec", help="sweep spec (TOML), e.g. sweeps/demo.toml")
    p.add_argument("--workers", type=_positive_int("--workers"), default=1, help="local worker processes")
    p.add_argument("--remeasure", action="store_true",
                   help="train nothing: re-measure every finished trial's throughput side by side, rewrite the table")
    p.add_argument("--rounds", type=_positive_int("--rounds"), default=3, help="interleaved rounds of --remeasure")
    p.add_argument("--storage", help="Optuna storage URL (default: the spec's, else sqlite in results/)")
    p.add_argument("--device", help="cpu or cuda (default: one GPU per worker when GPUs exist)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (trials and stages) and exit")
    p.add_argument("--repeat", type=_grid_point, action="append", default=[], metavar="N,S",
                   help="train this grid point once more, with the next seed (what `suggest` marks 'again'); repeatable")
    p.set_defaults(handler=_cmd_sweep)

    p = sub.add_parser("worker", help="join a sweep from another process or machine")
    p.add_argument("spec", help="sweep spec (TOML)")
    p.add_argument("--storage", required=True, help="the sweep's Optuna storage URL")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--wait", type=_non_negative_float("--wait"), default=600.0, metavar="SECONDS",
                   help="wait this long for the sweep to be started by `autoprumux sweep` (default 600; 0: not at all)")
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


def _number_list(flag: str, kind: type, example: str) -> Callable[[str], list]:
    def parse(value: str) -> list:
        try:
            return [kind(item) for item in value.split(",")]
        except ValueError:
            raise _UsageError(f"{flag} = {value!r} is invalid; expected a comma-separated list like {example}") from None

    return parse


def _grid_point(value: str) -> tuple[int, float]:
    try:
        mux, sparsity = value.split(",")
        return int(mux), float(sparsity)
    except ValueError:
        raise _UsageError(f"--repeat {value!r} is invalid; expected a grid point N,s like 4,0.8") from None


def _float(flag: str, example: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise _UsageError(f"{flag} = {value!r} is invalid; expected a number like {example}") from None

    return parse


def _add_bound_options(p) -> None:
    from autoprumux.meta.budget import DEFAULT_CONFIDENCE

    p.add_argument("--confidence", type=_float("--confidence", "0.95"), default=DEFAULT_CONFIDENCE,
                   help=f"one-sided confidence of the accuracy lower bound, in [0.5, 1) (default {DEFAULT_CONFIDENCE})")
    p.add_argument("--relative", action="store_true", help="the budget is a share of the baseline accuracy")


def _add_budget_options(p, results_help: str) -> None:
    p.add_argument("--results", help=results_help)
    _add_bound_options(p)
    p.add_argument("--baseline-accuracy", type=_float("--baseline-accuracy", "0.91"),
                   help="baseline (N = 1, s = 0) accuracy as a fraction, overriding or replacing the table's")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_meta_commands(sub) -> None:
    table_help = "results table (default: the newest results/*/trials.csv)"
    p = sub.add_parser("fit", help="fit the performance models and print their cross-validated errors")
    p.add_argument("--results", help=table_help)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_fit)

    choices = [
        ("--mux-choices", _number_list("--mux-choices", int, "1,2,5,10"), "only these N, e.g. 1,2,5,10"),
        ("--sparsity-choices", _number_list("--sparsity-choices", float, "0,0.6,0.7"),
         "only these sparsities, e.g. 0,0.6,0.7 (default: continuous up to the highest measured)"),
    ]
    p = sub.add_parser("recommend", help="the fastest (N, s) within an accuracy-loss budget")
    p.add_argument("--budget", required=True, help="accuracy loss allowed: 3%% or 0.03")
    _add_budget_options(p, table_help)
    for flag, parse, text in choices:
        p.add_argument(flag, type=parse, help=text)
    p.set_defaults(handler=_cmd_recommend)

    p = sub.add_parser("suggest", help="the next configurations worth training")
    p.add_argument("--budget", required=True, help="accuracy loss allowed: 3%% or 0.03")
    p.add_argument("--n", type=_positive_int("--n"), default=3, help="how many (default 3)")
    p.add_argument("--repeats", action=argparse.BooleanOptionalAction, default=True,
                   help="also propose training a measured configuration again with another seed, where recommend "
                        "cannot certify it yet (default; --no-repeats proposes only configurations never measured)")
    _add_budget_options(p, table_help)
    for flag, parse, text in choices:
        p.add_argument(flag, type=parse, help=text)
    p.set_defaults(handler=_cmd_suggest)

    p = sub.add_parser("evaluate", help="how good the recommender is on a table (leave-k-out regret)")
    _add_budget_options(p, table_help)
    p.add_argument("--budgets", default="1%,2%,3%,5%", help="comma-separated budgets (default 1%%,2%%,3%%,5%%)")
    p.add_argument("--holdout", type=_positive_int("--holdout"),
                   help="configurations hidden per split (default: a fifth of them)")
    p.add_argument("--splits", type=_positive_int("--splits"), default=10, help="random splits (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("plot", help="Pareto frontier and fitted-surface plots")
    p.add_argument("--results", help="results table (default: the newest results/*/trials.csv)")
    p.add_argument("--out", required=True, help="output directory for PNG and SVG files")
    p.add_argument("--budget", help="draw this budget's accuracy floor and recommendation, e.g. 3%%")
    _add_bound_options(p)
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


#: errno values that mean "this path cannot be written" (a read-only or full disk, no permission,
#: a file where a folder should be): user errors, reported in one line. Writes are atomic
#: (temporary file, then rename), so nothing already written is lost.
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except AutoprumuxError as exc:
        message = " ".join(str(exc).split())
        print(f"autoprumux: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _UNWRITABLE or exc.filename is None:
            raise  # not a place the user chose being unwritable: a bug, keep its traceback
        print(
            f"autoprumux: error: cannot write {str(exc.filename)!r}: {exc.strerror}; "
            "choose a writable location (--out, --results or the spec's results_dir)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("autoprumux: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
