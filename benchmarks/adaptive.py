"""Simulated sweeps on generated surfaces: which order of measurements finds a good (N, s) soonest?

    OMP_NUM_THREADS=1 python benchmarks/adaptive.py [--seeds 2] [--budget 3%] [--training-noise 0.005]
                                                    [--out results/adaptive] [--orders suggest random ...]

Each case of `autoprumux.meta.surfaces` (every family x `--seeds`) has its whole grid measured
in advance (Gaussian or binomial accuracy noise, 3-4% throughput noise, and with
`--training-noise` a training seed's offset beyond it), so every order sees the same measurement
of a configuration. Each configuration is measured `REPEATS` times (seeds): a repeat trains to a
fresh offset but is evaluated on the same dev set, so it keeps the first seed's evaluation
error (`surfaces.measure`); without training noise it measures the same accuracy again. A sweep
starts from the baseline and 3 random points (the same for every order) and adds `--batch`
trainings at a time, in one of six orders:

- ``suggest --no-repeats``: `autoprumux suggest --no-repeats` (constrained expected improvement;
  see meta/suggestion.py), which proposes only configurations never measured;
- ``suggest``: `autoprumux suggest` as it runs by default, also allowed to propose training a
  measured configuration again (the next seed). Before 41282ce repeats were off by default and
  these two orders were called ``suggest`` and ``suggest --repeats``; each keeps its place in
  `ORDERS`, so its random fill-ins and its rows are the same under the new name;
- ``random``: uniformly random among the unmeasured configurations;
- ``optuna TPE`` / ``optuna GP``: Optuna's TPESampler / GPSampler maximising measured throughput
  with the constraint floor - measured accuracy <= 0 (`constraints_func`), over the grid indices;
  a proposal already measured is told its known value and asked again (up to 5 times, then a
  random unmeasured configuration is taken);
- ``full grid``: the sweep's own plan order (sparsity ascending, the widest N first within one).

After every step, `recommend` (the same recommender for every order) picks from the table so
far; regret = 1 - its true throughput / the best true throughput within the floor (a violation
counts as 1). "Measured" counts trainings, a repeat included. Prints mean regret against the
number measured and, per order, how many trainings it took to reach regret <= 5% and stay there
(median over cases, a case that never got there counting as infinite; and mean, such a case
counting as one step past --cap); draws `regret.png` under --out.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from autoprumux.meta.budget import accuracy_floor, parse_budget
from autoprumux.meta.optimizer import recommend
from autoprumux.meta.replay import CLEAR_MARGIN, environment, grid_index, regret_of, write_csv
from autoprumux.meta.results import results_from_frame
from autoprumux.meta.selection import fit_performance_models
from autoprumux.meta.structured import AdditiveThroughputModel, MonotoneGPModel
from autoprumux.meta.suggestion import suggest
from autoprumux.meta.surfaces import FAMILIES, make_case, measure

ORDERS = ("suggest --no-repeats", "suggest", "random", "optuna TPE", "optuna GP", "full grid")
#: seeds measured in advance per configuration: the most trainings `suggest` can spend on one
REPEATS = 4
#: one model per target (no selection) keeps a simulated sweep affordable on two cores
FAST = {"accuracy": {"monotone-gp": MonotoneGPModel()}, "throughput": {"additive": AdditiveThroughputModel()}}


def fast_models(results):
    return fit_performance_models(results, candidates=FAST)


class Sweep:
    """The grid of one case, each configuration measured `REPEATS` times in advance. A sweep's
    state is the list of grid indices trained so far, a repeated index once per training."""

    def __init__(self, case, seed: int):
        rng = np.random.default_rng(seed)
        self.case, self.grid = case, case.grid
        flops = "flops_per_example" in case.table.columns
        points = self.grid[["mux", "sparsity"]]
        self.draws = measure(case.surface, points, case.noise, 0.035, flops, rng, case.training_noise, repeats=REPEATS)
        self.table = self.draws[self.draws["seed"] == 0].reset_index(drop=True)  # the first seed of each
        base = grid_index(self.grid, 1, 0.0)
        others = rng.permutation(np.delete(np.arange(len(self.grid)), base))
        self.start = [base, *others[:3].tolist()]

    def results(self, measured):
        """The table of the trainings so far: the k-th training of a configuration is its seed k - 1."""
        rows = [seed * len(self.grid) + index for index in sorted(set(measured)) for seed in range(measured.count(index))]
        return results_from_frame(self.draws.iloc[rows], source=self.case.name)

    def regret(self, measured, budget) -> tuple[float, float]:
        """Regret of `recommend` on the table so far: against the exact oracle, and against the
        best configuration half a point clear of the floor (`replay.CLEAR_MARGIN`)."""
        results = self.results(measured)
        models = fast_models(results)
        rec = recommend(results, budget, models=models, mux_choices=sorted(set(self.grid["mux"])),
                        sparsity_choices=sorted(set(self.grid["sparsity"])))  # fmt: skip
        pick = grid_index(self.grid, rec.recommendation.mux, rec.recommendation.sparsity)
        return (regret_of(self.case, rec.accuracy_floor, pick)[0],
                regret_of(self.case, rec.accuracy_floor, pick, CLEAR_MARGIN)[0])  # fmt: skip


def suggest_order(sweep: Sweep, budget, rng, repeats: bool = False):
    def step(measured, batch):
        results = sweep.results(measured)
        sug = suggest(results, budget, n=batch, models=fast_models(results), repeats=repeats,
                      mux_choices=sorted(set(sweep.grid["mux"])), sparsity_choices=sorted(set(sweep.grid["sparsity"])))  # fmt: skip
        picks = [grid_index(sweep.grid, s.mux, s.sparsity) for s in sug.suggestions]
        picks = [p for p in dict.fromkeys(picks) if measured.count(p) < REPEATS]  # a repeat is the next seed
        # fewer than `batch` (a repeat past REPEATS, or nothing left to suggest): random ones fill in,
        # so every order adds the same number of trainings per step
        return picks + _random(sweep, measured + picks, batch - len(picks), rng)

    return step


def _random(sweep, measured, batch, rng):
    free = [i for i in range(len(sweep.grid)) if i not in measured]
    return rng.permutation(free)[:batch].tolist()


def grid_order(sweep: Sweep):
    plan = sweep.grid.sort_values(["sparsity", "mux"], ascending=[True, False]).index.tolist()
    return lambda measured, batch: [i for i in plan if i not in measured][:batch]


def optuna_order(sweep: Sweep, sampler_name: str, floor: float, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    mux, sparsity = sorted(set(sweep.grid["mux"])), sorted(set(sweep.grid["sparsity"]))
    constraints = lambda trial: [trial.user_attrs["constraint"]]  # noqa: E731
    sampler = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, constraints_func=constraints)
        if sampler_name == "optuna TPE"
        else optuna.samplers.GPSampler(seed=seed, n_startup_trials=4, constraints_func=constraints)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    row = sweep.table

    def tell(trial, index):
        trial.set_user_attr("constraint", float(floor - row.loc[index, "accuracy"]))
        study.tell(trial, float(row.loc[index, "throughput"]))

    def ask():
        trial = study.ask()
        i = trial.suggest_int("mux_index", 0, len(mux) - 1)
        j = trial.suggest_int("sparsity_index", 0, len(sparsity) - 1)
        return trial, grid_index(sweep.grid, mux[i], sparsity[j])

    for index in sweep.start:
        study.enqueue_trial({"mux_index": mux.index(int(sweep.grid.loc[index, "mux"])),
                             "sparsity_index": sparsity.index(float(sweep.grid.loc[index, "sparsity"]))})  # fmt: skip
        tell(*ask())

    def step(measured, batch):
        picks = []
        for _ in range(5 * batch):
            trial, index = ask()
            tell(trial, index)
            if index not in measured and index not in picks:
                picks.append(index)
            if len(picks) == batch:
                return picks
        return picks + _random(sweep, measured + picks, batch - len(picks), rng)

    rng = np.random.default_rng(seed)

    return step


def simulate(case, seed: int, budget: float, batch: int, cap: int, orders=ORDERS) -> pd.DataFrame:
    sweep = Sweep(case, seed)
    rng = np.random.default_rng(seed + 1)
    floor = accuracy_floor(sweep.results(sweep.start).baseline_accuracy, budget)
    rows = []
    for order in orders:
        if order.startswith("suggest"):  # its own generator for the random fill-ins: the random order's stays its own
            own = np.random.default_rng([seed, ORDERS.index(order)])
            step = suggest_order(sweep, budget, own, repeats=order == "suggest")
        elif order == "random":
            step = lambda measured, batch: _random(sweep, measured, batch, rng)  # noqa: E731
        elif order == "full grid":
            step = grid_order(sweep)
        else:
            step = optuna_order(sweep, order, floor, seed)
        measured = list(sweep.start)
        while True:
            regret, clear = sweep.regret(measured, budget)
            rows.append({"case": case.name, "order": order, "measured": len(measured), "grid": len(sweep.grid),
                         "repeats": len(measured) - len(set(measured)), "regret": regret, "regret_clear": clear})  # fmt: skip
            if len(measured) >= min(cap, len(sweep.grid)):
                break
            measured += step(measured, batch)[: min(cap, len(sweep.grid)) - len(measured)]
    return pd.DataFrame(rows)


def reached(frame: pd.DataFrame, threshold: float = 0.05, column: str = "regret") -> pd.DataFrame:
    """Per case and order: configurations measured when regret fell to <= threshold for good
    (inf when it never did within the simulated range)."""

    def first(group):
        above = group[column].to_numpy() > threshold
        if above[-1]:
            return np.inf
        last_bad = np.flatnonzero(above)
        index = 0 if not len(last_bad) else last_bad[-1] + 1
        return group["measured"].iloc[index]

    out = frame.groupby(["case", "order"]).apply(first, include_groups=False).rename("reached").reset_index()
    return out.merge(frame.groupby("case")["grid"].first().reset_index(), on="case")


def head_to_head(got: pd.DataFrame, orders=ORDERS) -> pd.DataFrame:
    """`reached` case by case: in how many cases `suggest` got there sooner than each other order,
    later, or at the same count (two orders that never got there tie)."""
    wide = got.pivot(index="case", columns="order", values="reached")
    ours = wide["suggest"]
    rows = {peer: {"sooner": int((ours < wide[peer]).sum()), "later": int((ours > wide[peer]).sum()),
                   "tied": int((ours == wide[peer]).sum())} for peer in orders if peer != "suggest"}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def plot(frame: pd.DataFrame, path: Path, orders=ORDERS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained", sharey=True)
    titles = {"regret": "against the exact oracle", "regret_clear": "against the oracle 0.5 points clear"}
    for ax, (column, title) in zip(axes, titles.items(), strict=True):
        for order in orders:
            curve = frame[frame["order"] == order].groupby("measured")[column].mean()
            ax.plot(curve.index, 100 * curve.to_numpy(), marker="o", markersize=3, label=order)
        ax.axhline(5, color="0.5", linestyle="--", linewidth=1, label="5% regret")
        ax.set_xlabel("trainings (configurations measured, repeats included)")
        ax.set_title(title)
    axes[0].set_ylabel("mean regret of recommend (%)")
    axes[0].legend()
    fig.suptitle(f"simulated sweeps: {frame['case'].nunique()} generated cases")
    fig.savefig(path, dpi=120, metadata={"Software": None})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="cases per family (default 2)")
    parser.add_argument("--budget", default="3%")
    parser.add_argument("--batch", type=int, default=2, help="configurations added per step (default 2)")
    parser.add_argument("--cap", type=int, default=24, help="stop every sweep at this many measured (default 24)")
    parser.add_argument("--training-noise", type=float, default=0.0,
                        help="std of a training seed's accuracy offset, e.g. 0.005 (default 0: none)")
    parser.add_argument("--out", help="folder for adaptive.csv and regret.png")
    parser.add_argument("--orders", nargs="+", choices=ORDERS, default=list(ORDERS), metavar="ORDER",
                        help="simulate only these orders (each keeps its rows: its random draws are its own); "
                             "default all of: " + ", ".join(ORDERS))
    args = parser.parse_args(argv)
    orders = [order for order in ORDERS if order in args.orders]
    budget = parse_budget(args.budget)
    # optuna's experimental-feature notes and the deprecation of constraints_func (still works in 5.x)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    cases = [make_case(family, 1000 * i + seed, training_noise=args.training_noise)
             for i, family in enumerate(FAMILIES) for seed in range(args.seeds)]  # fmt: skip
    parts = []
    for k, case in enumerate(cases):
        parts.append(simulate(case, 7 + k, budget, args.batch, args.cap, orders))
        print(f"{case.name}: done ({k + 1}/{len(cases)})", file=sys.stderr, flush=True)
    frame = pd.concat(parts, ignore_index=True)
    pd.set_option("display.width", 160)
    print(f"{len(cases)} cases (grids of {frame['grid'].min()}-{frame['grid'].max()}), budget {args.budget}, "
          f"batch {args.batch}, training noise {args.training_noise:g}")
    print(environment())
    for column, name in (("regret", "regret"), ("regret_clear", "regret against the oracle 0.5 points clear")):
        table = frame.pivot_table(index="measured", columns="order", values=column, aggfunc="mean")[orders]
        print(f"mean {name} against configurations measured:")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        got = reached(frame, column=column)
        got["share"] = got["reached"] / got["grid"]
        summary = got.groupby("order").agg(
            cases_reached=("reached", lambda v: int(np.isfinite(v).sum())),
            median_measured=("reached", "median"),
            median_share_of_grid=("share", "median"),
            mean_measured=("reached", lambda v: float(np.where(np.isfinite(v), v, args.cap + args.batch).mean())),
        )
        print(f"configurations measured to reach {name} <= 5% and stay there (of {len(cases)} cases, within {args.cap}):")
        print(summary.loc[orders].to_string(float_format=lambda v: f"{v:.2f}"))
        if "suggest" in orders and len(orders) > 1:
            print("case by case, suggest against each other order:")
            print(head_to_head(got, orders).to_string())
    last = frame.groupby(["case", "order"]).tail(1)
    at_cap = last.groupby("order").agg(
        regret=("regret", "mean"),
        violations=("regret", lambda v: float((v >= 1).mean())),
        regret_clear=("regret_clear", "mean"),
        repeats=("repeats", "mean"),
        cases_with_repeats=("repeats", lambda v: int((v > 0).sum())),
    ).loc[orders]
    print(f"at the end ({args.cap} trainings): mean regret, violation rate, mean regret against the oracle 0.5 "
          "points clear, and repeats (trainings of a configuration measured before) per case")
    print(at_cap.to_string(float_format=lambda v: f"{v:.3f}"))
    wide = last.pivot(index="case", columns="order", values="regret")
    if "suggest" in orders and len(orders) > 1:
        print("case by case at the end, suggest's regret against each other order's (lower, higher, equal):")
        print(pd.DataFrame({peer: {"lower": int((wide["suggest"] < wide[peer] - 1e-12).sum()),
                                   "higher": int((wide["suggest"] > wide[peer] + 1e-12).sum()),
                                   "equal": int((abs(wide["suggest"] - wide[peer]) <= 1e-12).sum())}
                            for peer in orders if peer != "suggest"}).T.to_string())  # fmt: skip
    write_csv(frame, args.out, "adaptive.csv")
    if args.out:
        plot(frame, Path(args.out) / "regret.png", orders)


if __name__ == "__main__":
    main()
