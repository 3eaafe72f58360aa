"""A suite of generated (N, s) surfaces with known truth, for tests and the recommender benchmarks.

Each `Surface` is ground truth for one task: accuracy (fraction) and throughput (examples/s) at
any (N, s), and the FLOPs per example that produce the throughput. Families (`FAMILIES`):

- ``smooth``: accuracy falls smoothly in N and s (with an interaction); throughput is close to
  multiplicative.
- ``peak``: the demultiplexing cost grows with N, so throughput peaks at a middle N.
- ``dead``: one width never trained: its accuracy sits at chance (1 / num_labels) at every s.
- ``knee``: accuracy holds until a pruning knee, then falls fast.

`make_case` draws one surface of a family, a grid, the measured subset (baseline always in) and
the noise (Gaussian, or binomial over `eval_examples`), and returns the table with its truth.
With `training_noise` (a std, in accuracy units) each measured configuration first trains to its
true accuracy plus a draw of that std, as a training seed moves a real run; the truth stays the
surface (what the configuration trains to on average), and nothing in the table tells that noise
apart from the measurement's beyond the binomial variance it can compute.

>>> case = make_case("smooth", seed=0)
>>> bool(case.table["mux"].eq(1).any()), case.table.shape[0] < len(case.grid)
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from autoprumux.table import FINISHED

FAMILIES = ("smooth", "peak", "dead", "knee")
#: evaluation-set sizes of binomial noise: the dev sets of SST-2, 2,000 (a mid-sized task), QNLI and MNLI-m
GLUE_DEV_SIZES = (872, 2000, 5463, 9815)
#: (N values, sparsities): 35-42 grid points each
GRIDS = (
    ((1, 2, 4, 8, 16), (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)),
    ((1, 2, 3, 4, 6, 8), (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)),
    ((1, 2, 5, 10), (0.0, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)),
    ((1, 2, 4, 6, 8, 10), (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)),
)


@dataclass(frozen=True)
class Surface:
    """Ground truth. accuracy = base - mux_drop * m(N) - prune_drop * h(s) - interaction * m * h,
    with m(N) = log N / log n_top and h(s) = ((z - z_knee)+ / (z_top - z_knee))^q, z = -log(1 - s);
    a `dead_mux` width is at chance. FLOPs per example = F * ((1 - fixed) (1 - s) + fixed) / N +
    F * overhead * (N - 1); throughput = efficiency / FLOPs, efficiency falling with s."""

    base: float = 0.9
    mux_drop: float = 0.04
    prune_drop: float = 0.04
    interaction: float = 0.01
    q: float = 1.5
    knee: float = 0.0
    n_top: float = 10.0
    s_top: float = 0.9
    num_labels: int = 2
    dead_mux: int | None = None
    flops: float = 2.0e10
    fixed: float = 0.05
    overhead: float = 0.002
    efficiency: float = 1.0e13
    efficiency_loss: float = 0.3

    def accuracy(self, mux, sparsity) -> np.ndarray:
        """True accuracy (fraction) at N = `mux`, sparsity `sparsity`."""
        mux, sparsity = np.broadcast_arrays(np.asarray(mux, float), np.asarray(sparsity, float))
        m = np.log(mux) / np.log(self.n_top)
        z, z_knee, z_top = (-np.log1p(-np.asarray(v)) for v in (sparsity, self.knee, self.s_top))
        h = (np.maximum(z - z_knee, 0.0) / (z_top - z_knee)) ** self.q
        acc = self.base - self.mux_drop * m - self.prune_drop * h - self.interaction * m * h
        acc = np.maximum(acc, self.chance)
        if self.dead_mux is not None:
            acc = np.where(mux == self.dead_mux, self.chance, acc)
        return acc

    @property
    def chance(self) -> float:
        return 1.0 / self.num_labels

    def flops_per_example(self, mux, sparsity) -> np.ndarray:
        """Forward FLOPs per original input."""
        mux, sparsity = np.asarray(mux, float), np.asarray(sparsity, float)
        encoder = self.flops * ((1.0 - self.fixed) * (1.0 - sparsity) + self.fixed) / mux
        return encoder + self.flops * self.overhead * (mux - 1.0)

    def throughput(self, mux, sparsity) -> np.ndarray:
        """True throughput (examples/s)."""
        sparsity = np.asarray(sparsity, float)
        efficiency = self.efficiency * (1.0 - self.efficiency_loss * sparsity**2)
        return efficiency / self.flops_per_example(mux, sparsity)


def random_surface(family: str, grid, rng: np.random.Generator) -> Surface:
    """One surface of `family` with parameters drawn from ranges seen in PruMUX-like sweeps."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r} instead.")
    mux, sparsity = grid
    params = dict(
        base=rng.uniform(0.80, 0.93),
        mux_drop=rng.uniform(0.02, 0.08),
        prune_drop=rng.uniform(0.02, 0.08),
        interaction=rng.uniform(0.0, 0.03),
        q=rng.uniform(1.0, 2.5),
        n_top=float(max(mux)),
        s_top=float(max(sparsity)),
        num_labels=int(rng.choice([2, 3])),
        fixed=rng.uniform(0.03, 0.1),
        overhead=rng.uniform(0.0, 0.003),
        efficiency_loss=rng.uniform(0.1, 0.5),
    )
    if family == "peak":
        # cost minimum at a middle N: overhead * N^2 ~ encoder share at N ~ mid
        mid = float(np.sort(mux)[len(mux) // 2])
        params["overhead"] = rng.uniform(0.6, 1.2) / mid**2
    elif family == "dead":
        params["dead_mux"] = int(rng.choice([n for n in mux if n > 1]))
    elif family == "knee":
        params["knee"] = rng.uniform(0.6, 0.8)
        params["q"] = rng.uniform(1.5, 3.0)
        params["prune_drop"] = rng.uniform(0.06, 0.15)
    return Surface(**params)


@dataclass(frozen=True)
class Case:
    """One generated table: its surface, grid (every (N, s) candidate), the measured table and
    the noise model."""

    name: str
    surface: Surface
    grid: pd.DataFrame = field(repr=False)  # columns mux, sparsity, accuracy, throughput (true)
    table: pd.DataFrame = field(repr=False)
    noise: str
    training_noise: float = 0.0


def make_case(
    family: str,
    seed: int,
    grid_index: int | None = None,
    noise: str | None = None,
    measured_fraction: float | None = None,
    throughput_noise: float | None = None,
    flops: bool | None = None,
    training_noise: float = 0.0,
    noise_scale: float = 1.0,
) -> Case:
    """A generated table of `family`; unset choices are drawn from `seed` (grid, noise in
    {gaussian, binomial}, 40-60% of the grid measured, 3-4% throughput noise, FLOPs column).
    `training_noise`: std of each measured configuration's training-seed offset (none by default;
    the surface, grid, measured points and evaluation size stay those drawn without it).
    `noise_scale` multiplies the accuracy measurement's std: the Gaussian sd, or the binomial one
    by evaluating on 1 / noise_scale^2 times the examples (the surface, grid, measured points and
    noise kind stay those of scale 1)."""
    rng = np.random.default_rng(seed)
    grid_index = int(rng.integers(len(GRIDS))) if grid_index is None else grid_index
    mux_values, sparsities = GRIDS[grid_index]
    surface = random_surface(family, (mux_values, sparsities), rng)
    noise = noise or str(rng.choice(["gaussian", "binomial"]))
    fraction = rng.uniform(0.4, 0.6) if measured_fraction is None else measured_fraction
    throughput_noise = rng.uniform(0.03, 0.04) if throughput_noise is None else throughput_noise
    flops = bool(rng.integers(2)) if flops is None else flops
    mux, sparsity = (a.ravel() for a in np.meshgrid(mux_values, sparsities, indexing="ij"))
    grid = pd.DataFrame(
        {
            "mux": mux.astype(int),
            "sparsity": sparsity,
            "accuracy": surface.accuracy(mux, sparsity),
            "throughput": surface.throughput(mux, sparsity),
        }
    )
    base = int(np.flatnonzero((mux == 1) & (sparsity == 0))[0])
    others = rng.permutation(np.delete(np.arange(len(grid)), base))
    chosen = np.r_[base, others[: max(int(round(fraction * len(grid))) - 1, 2)]]
    points = grid.loc[np.sort(chosen), ["mux", "sparsity"]]
    table = measure(surface, points, noise, throughput_noise, flops, rng, training_noise, noise_scale)
    name = f"{family}-g{grid_index}-{noise}-{seed}"
    return Case(name, surface, grid, table, noise, training_noise)


def measure(surface: Surface, points: pd.DataFrame, noise: str, throughput_noise: float, flops: bool, rng,
            training_noise: float = 0.0, noise_scale: float = 1.0, repeats: int = 1):  # fmt: skip
    """A results table of noisy measurements of `surface` at `points` (columns mux, sparsity); with
    `training_noise`, each point's trained accuracy is off its truth by a normal draw of that std
    (from a child generator of `rng`).

    With `repeats` > 1 every point is measured that many times (column `seed`; seed 0 is the table
    drawn with `repeats` = 1): each repeat trains to its own offset (a fresh draw of
    `training_noise`) but is evaluated on the same dev set, so it keeps seed 0's evaluation error,
    Gaussian or binomial, which no number of repeats averages away; throughput is measured
    afresh. Without training noise, every repeat measures the same accuracy."""
    mux, sparsity = points["mux"].to_numpy(int), points["sparsity"].to_numpy(float)
    mean = truth = surface.accuracy(mux, sparsity)
    if training_noise > 0:
        offsets = rng.spawn(1)[0].normal(0.0, training_noise, len(truth))
        truth = np.clip(truth + offsets, 0.0, 1.0)
    columns: dict = {}
    if noise == "binomial":
        examples = int(round(int(rng.choice(GLUE_DEV_SIZES)) / noise_scale**2))
        accuracy = rng.binomial(examples, truth) / examples
        columns["eval_examples"] = examples
    else:
        sd = noise_scale * rng.uniform(0.002, 0.005)
        accuracy = np.clip(truth + rng.normal(0.0, sd, len(truth)), 0.0, 1.0)
    throughput = surface.throughput(mux, sparsity) * np.exp(rng.normal(0.0, throughput_noise, len(mux)))
    frame = pd.DataFrame(
        {
            "sweep": "generated",
            "task": "generated",
            "model": "generated",
            "mux": mux,
            "sparsity_target": sparsity,
            "sparsity": sparsity,
            "accuracy": accuracy,
            "throughput": throughput,
            "num_labels": surface.num_labels,
            "status": FINISHED,
            **columns,
        }
    )
    if flops:
        frame["flops_per_example"] = surface.flops_per_example(mux, sparsity)
    if repeats > 1:
        draws, error, more = rng.spawn(1)[0], accuracy - truth, [frame.assign(seed=0)]
        for seed in range(1, repeats):
            trained = np.clip(mean + draws.normal(0.0, training_noise, len(mean)), 0.0, 1.0) if training_noise > 0 else mean
            throughput = surface.throughput(mux, sparsity) * np.exp(draws.normal(0.0, throughput_noise, len(mux)))
            more.append(frame.assign(accuracy=np.clip(trained + error, 0.0, 1.0), throughput=throughput, seed=seed))
        frame = pd.concat(more)
    return frame.reset_index(drop=True)


def suite(families=FAMILIES, seeds=range(12), training_noise: float = 0.0,
          noise_scale: float = 1.0, measured_fraction: float | None = None) -> list[Case]:  # fmt: skip
    """`make_case(family, seed)` for every family and seed (grids and noise drawn per seed);
    `measured_fraction` = 1 measures every grid point (the same surfaces and grids, other noise
    draws)."""
    return [make_case(family, 1000 * i + seed, training_noise=training_noise, noise_scale=noise_scale,
                      measured_fraction=measured_fraction)
            for i, family in enumerate(families) for seed in seeds]  # fmt: skip
