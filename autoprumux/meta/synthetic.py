"""Synthetic results tables with known ground truth, for tests and `evaluate` demonstrations.

accuracy(N, s)   = a - b * N^p - c * (-log(1 - s))^q          (fraction)
throughput(N, s) = T0 * N^u / (1 - s)^v                          (examples/s)

>>> table = synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5))
>>> len(table), sorted(table.columns)[:3]
(4, ['accuracy', 'model', 'mux'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from autoprumux.table import FINISHED


@dataclass(frozen=True)
class SyntheticSurface:
    """Ground-truth accuracy and throughput surfaces (defaults: about 5 points lost at N = 10 and
    at s = 0.9 each; 7.9x throughput at N = 10 and 5x at s = 0.9)."""

    a: float = 0.908
    b: float = 0.008
    p: float = 0.8
    c: float = 0.012
    q: float = 1.5
    t0: float = 500.0
    u: float = 0.9
    v: float = 0.7

    def accuracy(self, mux, sparsity) -> np.ndarray:
        """True accuracy (fraction) at N = `mux`, sparsity `sparsity`."""
        z = -np.log1p(-np.asarray(sparsity, dtype=float))
        return self.a - self.b * np.asarray(mux, dtype=float) ** self.p - self.c * z**self.q

    def throughput(self, mux, sparsity) -> np.ndarray:
        """True throughput (examples/s) at N = `mux`, sparsity `sparsity`."""
        return (
            self.t0
            * np.asarray(mux, dtype=float) ** self.u
            / (1.0 - np.asarray(sparsity, dtype=float)) ** self.v
        )


def synthetic_table(
    surface: SyntheticSurface = SyntheticSurface(),
    mux: Sequence[int] = (1, 2, 5, 10),
    sparsity: Sequence[float] = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9),
    accuracy_noise: float = 0.0,
    throughput_noise: float = 0.0,
    sparsity_jitter: float = 0.0,
    repeats: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """A results table over the grid `mux` x `sparsity` (targets), `repeats` rows per point.

    Noise is Gaussian: `accuracy_noise` in accuracy (fraction) units, `throughput_noise` relative
    (0.03 = 3%), `sparsity_jitter` added to the measured sparsity (the target stays exact).
    """
    rng = np.random.default_rng(seed)
    grid = [(n, s) for n in mux for s in sparsity for _ in range(repeats)]
    n_arr = np.array([g[0] for g in grid], dtype=int)
    target = np.array([g[1] for g in grid], dtype=float)
    measured = np.clip(target + rng.normal(0.0, sparsity_jitter, len(grid)) * (target > 0), 0.0, 0.99)
    accuracy = surface.accuracy(n_arr, measured) + rng.normal(0.0, accuracy_noise, len(grid))
    throughput = surface.throughput(n_arr, measured) * np.exp(rng.normal(0.0, throughput_noise, len(grid)))
    return pd.DataFrame(
        {
            "sweep": "synthetic",
            "task": "synthetic",
            "model": "synthetic",
            "mux": n_arr,
            "sparsity_target": target,
            "sparsity": measured,
            "accuracy": np.clip(accuracy, 0.0, 1.0),
            "throughput": throughput,
            "status": FINISHED,
            "seed": np.tile(np.arange(repeats), len(grid) // max(repeats, 1)),
        }
    )


def _main(argv: Sequence[str] | None = None) -> None:
    """`python -m autoprumux.meta.synthetic OUT.csv [--accuracy-noise 0.003] ...` writes a table."""
    import argparse

    from autoprumux.table import write_table

    parser = argparse.ArgumentParser(prog="python -m autoprumux.meta.synthetic", description=_main.__doc__)
    parser.add_argument("out", help="CSV path to write")
    parser.add_argument("--mux", default="1,2,5,10", help="N values (default 1,2,5,10)")
    parser.add_argument("--sparsity", default="0,0.5,0.6,0.7,0.8,0.9", help="target sparsities")
    parser.add_argument("--accuracy-noise", type=float, default=0.0, help="accuracy noise std (fraction)")
    parser.add_argument("--throughput-noise", type=float, default=0.0, help="relative throughput noise std")
    parser.add_argument("--sparsity-jitter", type=float, default=0.0, help="measured-sparsity noise std")
    parser.add_argument("--repeats", type=int, default=1, help="rows per grid point")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = synthetic_table(
        mux=[int(v) for v in args.mux.split(",")],
        sparsity=[float(v) for v in args.sparsity.split(",")],
        accuracy_noise=args.accuracy_noise,
        throughput_noise=args.throughput_noise,
        sparsity_jitter=args.sparsity_jitter,
        repeats=args.repeats,
        seed=args.seed,
    )
    write_table(table, args.out)


if __name__ == "__main__":
    _main()
