"""`make demo`'s last step: which checkpoints it measures side by side."""

from pathlib import Path

from autoprumux.demo import comparison_checkpoints
from autoprumux.meta import load_results, recommend, synthetic_table
from autoprumux.table import write_table


def demo_table(tmp_path, **overrides):
    table = synthetic_table(mux=(1, 2, 4), sparsity=(0.0, 0.5, 0.7)).assign(**overrides)
    table["checkpoint"] = [str(tmp_path / f"ckpt-{n}-{s}") for n, s in zip(table.mux, table.sparsity_target, strict=True)]
    for path in table["checkpoint"]:
        Path(path).mkdir(parents=True)
    return table, write_table(table, tmp_path / "trials.csv")


def test_the_baseline_the_recommendation_and_the_best_of_each_technique_alone(tmp_path):
    table, path = demo_table(tmp_path)
    floor = table.loc[(table.mux == 1) & (table.sparsity_target == 0), "accuracy"].iloc[0] - 0.20
    ok = table[table.accuracy >= floor]
    mux_only = ok[(ok.mux > 1) & (ok.sparsity_target == 0)].sort_values("throughput").checkpoint.iloc[-1]
    prune_only = ok[(ok.mux == 1) & (ok.sparsity_target > 0)].sort_values("throughput").checkpoint.iloc[-1]
    pick = recommend(load_results(path), "20%").recommendation
    assert pick.measured and pick.mux > 1 and pick.sparsity > 0
    recommended = str(tmp_path / f"ckpt-{pick.mux}-{pick.sparsity}")
    best = ok.sort_values("throughput").checkpoint.iloc[-1]
    expected = list(dict.fromkeys([str(tmp_path / "ckpt-1-0.0"), recommended, best, mux_only, prune_only]))
    assert comparison_checkpoints(path, "20%") == expected and len(expected) >= 4


def test_nothing_to_compare_when_checkpoints_are_gone(tmp_path):
    table, path = demo_table(tmp_path / "b")
    for checkpoint in table.checkpoint:
        if not checkpoint.endswith("ckpt-1-0.0"):
            Path(checkpoint).rmdir()
    assert comparison_checkpoints(path, "20%") == []
