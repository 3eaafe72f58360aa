"""`make demo`'s last step: which checkpoints it measures side by side."""

from pathlib import Path

from autoprumux.demo import recommended_checkpoints
from autoprumux.meta import synthetic_table
from autoprumux.table import write_table


def demo_table(tmp_path, **overrides):
    table = synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5, 0.7)).assign(**overrides)
    table["checkpoint"] = [str(tmp_path / f"ckpt-{n}-{s}") for n, s in zip(table.mux, table.sparsity_target, strict=True)]
    for path in table["checkpoint"]:
        Path(path).mkdir(parents=True)
    return write_table(table, tmp_path / "trials.csv")


def test_the_baseline_and_the_measured_recommendation(tmp_path):
    # at a 20% budget the fastest measured configuration (N = 2, s = 0.7) is within it
    assert recommended_checkpoints(demo_table(tmp_path), "20%") == [
        str(tmp_path / "ckpt-1-0.0"), str(tmp_path / "ckpt-2-0.7")]


def test_nothing_to_compare_when_the_answer_is_the_baseline_or_checkpoints_are_gone(tmp_path):
    assert recommended_checkpoints(demo_table(tmp_path / "a"), "0%") == []  # infeasible: the baseline
    path = demo_table(tmp_path / "b")
    (tmp_path / "b" / "ckpt-2-0.7").rmdir()
    assert recommended_checkpoints(path, "20%") == []
