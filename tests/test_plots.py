"""Plots: the info functions compute the right data, the renderers and the CLI write PNG + SVG,
bad input is a one-line error, and `autoprumux.plots` stays torch-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autoprumux.cli import main
from autoprumux.errors import BudgetError, TableError
from autoprumux.meta.optimizer import recommend
from autoprumux.meta.results import results_from_frame
from autoprumux.meta.selection import MODELS_FILENAME, load_or_fit_models
from autoprumux.meta.synthetic import synthetic_table
from autoprumux.plots import (
    MeasuredPoint,
    cross_validation_info,
    describe_table,
    family_of,
    fitted_info,
    pareto_front,
    pareto_info,
    plot_pareto,
    plot_results,
    save_figure,
)


def _point(throughput, accuracy, mux=2, sparsity=0.5):
    return MeasuredPoint(mux, sparsity, accuracy, throughput, family_of(mux, sparsity))


# A hand-made table: (mux, sparsity, accuracy, throughput). Dominated points are marked.
HAND_MADE = [
    (1, 0.0, 0.90, 100.0),  # baseline
    (2, 0.0, 0.88, 190.0),
    (4, 0.0, 0.85, 380.0),
    (8, 0.0, 0.84, 300.0),  # multiplexing: dominated by N = 4
    (1, 0.5, 0.89, 150.0),
    (1, 0.8, 0.86, 140.0),  # pruning: dominated by s = 0.5
    (2, 0.5, 0.87, 290.0),
    (2, 0.8, 0.86, 280.0),  # PruMUX: dominated by (2, 0.5)
    (4, 0.8, 0.83, 700.0),
]


@pytest.fixture
def hand_made() -> pd.DataFrame:
    return pd.DataFrame(HAND_MADE, columns=["mux", "sparsity", "accuracy", "throughput"])


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    """A small noisy synthetic sweep table with its fitted models saved beside it (so the CLI
    tests load them instead of refitting)."""
    frame = synthetic_table(
        mux=(1, 2, 4), sparsity=(0.0, 0.5, 0.8), accuracy_noise=0.003, throughput_noise=0.02, seed=3
    )
    frame["hardware"] = "cpu: test machine"
    path = tmp_path_factory.mktemp("sweep") / "trials.csv"
    frame.to_csv(path, index=False)
    results = results_from_frame(pd.read_csv(path), source=str(path))
    load_or_fit_models(results, save=True)
    return path


@pytest.fixture(scope="module")
def fitted(table_path):
    results = results_from_frame(pd.read_csv(table_path), source=str(table_path))
    models, how = load_or_fit_models(results, save=False)
    assert how.startswith("models loaded")
    return models, results


# --- pure info functions ---------------------------------------------------------------------


def test_pareto_front_excludes_dominated_points():
    points = [_point(100, 0.90), _point(200, 0.85), _point(150, 0.80), _point(300, 0.70), _point(250, 0.70)]
    front = pareto_front(points)
    assert [(p.throughput, p.accuracy) for p in front] == [(100, 0.90), (200, 0.85), (300, 0.70)]


def test_pareto_front_ties_and_duplicates():
    equal_throughput = [_point(100, 0.90), _point(100, 0.80)]
    assert [p.accuracy for p in pareto_front(equal_throughput)] == [0.90]
    duplicates = [_point(100, 0.90), _point(100, 0.90)]
    assert len(pareto_front(duplicates)) == 2
    assert pareto_front([]) == ()


def test_family_of():
    assert family_of(1, 0.0) == "baseline"
    assert family_of(4, 0.0) == "mux-only"
    assert family_of(1, 0.6) == "prune-only"
    assert family_of(2, 0.6) == "prumux"


def test_pareto_info_gives_each_family_its_frontier(hand_made):
    info = pareto_info(results_from_frame(hand_made))
    assert len(info.points) == len(HAND_MADE)
    fronts = {family: [(p.mux, p.sparsity) for p in front] for family, front in info.fronts.items()}
    assert fronts == {
        "baseline": [(1, 0.0)],
        "mux-only": [(2, 0.0), (4, 0.0)],
        "prune-only": [(1, 0.5)],
        "prumux": [(2, 0.5), (4, 0.8)],
    }
    assert info.accuracy_floor is None and info.highlight is None


def test_pareto_info_from_a_results_table_averages_repeats(hand_made):
    repeated = pd.concat([hand_made, hand_made.assign(accuracy=hand_made["accuracy"] - 0.02)], ignore_index=True)
    info = pareto_info(results_from_frame(repeated))
    baseline = [p for p in info.points if p.family == "baseline"]
    assert len(info.points) == len(HAND_MADE)
    assert baseline[0].accuracy == pytest.approx(0.89)


def test_pareto_info_shows_the_recommendation_and_floor(fitted):
    models, results = fitted
    rec = recommend(results, "3%", models=models).to_dict()
    info = pareto_info(results, rec)
    assert info.accuracy_floor == pytest.approx(results.baseline_accuracy - 0.03)
    assert "3%" in info.budget_label
    assert (info.highlight.mux, info.highlight.sparsity) == (rec["recommendation"]["mux"],
                                                            rec["recommendation"]["sparsity"])
    assert info.highlight.reason is None and info.highlight.accuracy_low >= info.accuracy_floor
    assert info.context == "task: synthetic · model: synthetic · hardware: cpu: test machine"


def test_pareto_info_when_nothing_meets_the_budget(fitted):
    models, results = fitted
    rec = recommend(results, 0.0, models=models, confidence=0.99).to_dict()
    info = pareto_info(results, rec)
    assert info.highlight.reason and (info.highlight.mux, info.highlight.sparsity) == (1, 0.0)
    legend_texts = [t.get_text() for legend in plot_pareto(info).legends for t in legend.get_texts()]
    assert any(text.startswith("nothing meets the budget") for text in legend_texts)


def test_describe_table_uses_the_columns_that_exist(hand_made):
    assert describe_table(hand_made) == ""
    rows = hand_made.assign(task="sst2", model="minilm", hardware="cpu " + "x" * 80)
    text = describe_table(rows)
    assert text.startswith("task: sst2 · model: minilm · hardware: cpu x")
    assert len(text) < 120
    two = hand_made.assign(task=["a", "b"] * 4 + ["a"])
    assert describe_table(two) == "task: 2 different"


def test_fitted_info_curves_and_bands(fitted):
    models, results = fitted
    info = fitted_info(models, results, confidence=0.9, points=25)
    assert [c.mux for c in info.curves] == [1, 2, 4]
    for curve in info.curves:
        assert curve.sparsity[0] == 0.0 and curve.sparsity[-1] == pytest.approx(results.rows["sparsity"].max())
        assert np.all(curve.accuracy_low < curve.accuracy) and np.all(curve.accuracy < curve.accuracy_high)
        assert np.all(curve.throughput_low < curve.throughput) and np.all(curve.throughput < curve.throughput_high)
    narrow = fitted_info(models, results, confidence=0.5, points=25)
    assert np.all(narrow.curves[0].accuracy_high - narrow.curves[0].accuracy_low
                  < info.curves[0].accuracy_high - info.curves[0].accuracy_low)
    # The curves follow the measurements: throughput grows with N at s = 0.
    assert info.curves[0].throughput[0] < info.curves[1].throughput[0] < info.curves[2].throughput[0]
    assert len(info.measured_accuracy) == len(results.rows)


def test_cross_validation_info_matches_the_reported_cv_error(fitted):
    models, results = fitted
    info = cross_validation_info(models, results)
    accuracy, throughput = info.panels
    assert accuracy.target == "accuracy" and throughput.target == "throughput"
    mae_points = 100 * np.mean(np.abs(accuracy.measured - accuracy.predicted))
    assert mae_points == pytest.approx(accuracy.error, rel=1e-6)
    mape = 100 * np.mean(np.abs(throughput.predicted / throughput.measured - 1))
    assert mape == pytest.approx(throughput.error, rel=1e-6)
    assert np.allclose(throughput.measured, results.rows["throughput"])


# --- renderers and files ---------------------------------------------------------------------


def _assert_images(paths):
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000, path
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG")
        else:
            assert b"<svg" in data[:2000]


def test_renderer_writes_png_and_svg(tmp_path, fitted):
    models, results = fitted
    figure = plot_pareto(pareto_info(results, recommend(results, "2%", models=models).to_dict()))
    paths = save_figure(figure, tmp_path, "pareto")
    assert [p.name for p in paths] == ["pareto.png", "pareto.svg"]
    _assert_images(paths)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind
    redrawn = plot_pareto(pareto_info(results, recommend(results, "2%", models=models).to_dict()))
    again = save_figure(redrawn, tmp_path / "again", "pareto")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]  # reproducible files


def test_plot_results_on_a_table_with_only_the_minimal_columns(tmp_path, table_path):
    path = tmp_path / "minimal.csv"
    pd.read_csv(table_path)[["mux", "sparsity", "accuracy", "throughput"]].to_csv(path, index=False)
    # Same modelled values, so the models saved beside the full table fit this one too.
    (tmp_path / MODELS_FILENAME).write_bytes((table_path.parent / MODELS_FILENAME).read_bytes())
    paths = plot_results(path, tmp_path / "plots", budget=0.05, formats=("png",))
    assert [p.name for p in paths] == ["pareto.png", "fitted.png", "cross_validation.png"]
    _assert_images(paths)


def test_plot_results_bad_input_raises_meta_errors(tmp_path, table_path, hand_made):
    with pytest.raises(BudgetError):
        plot_results(table_path, tmp_path, budget="150%")
    with pytest.raises(TableError):
        plot_results(tmp_path / "missing.csv", tmp_path)
    no_baseline = tmp_path / "no_baseline.csv"
    hand_made[hand_made["mux"] > 1].to_csv(no_baseline, index=False)
    with pytest.raises(TableError, match="baseline"):
        plot_results(no_baseline, tmp_path)
    assert not list(tmp_path.glob("*.png"))


# --- command line ----------------------------------------------------------------------------


def test_cli_plot_writes_png_and_svg_of_each_plot(tmp_path, table_path, capsys):
    out = tmp_path / "out"
    assert main(["plot", "--results", str(table_path), "--out", str(out), "--budget", "3%"]) == 0
    printed = [Path(line) for line in capsys.readouterr().out.splitlines()]
    expected = {f"{s}.{f}" for s in ("pareto", "fitted", "cross_validation") for f in ("png", "svg")}
    assert {p.name for p in printed} == expected and all(p.parent == out for p in printed)
    _assert_images(printed)


@pytest.mark.parametrize("extra", [[], ["--confidence", "0.9", "--relative"]])
def test_cli_plot_draws_what_recommend_picks_with_the_same_options(tmp_path, table_path, capsys, monkeypatch, extra):
    import autoprumux.plots as plots

    drawn, real = [], plots.pareto_info
    monkeypatch.setattr(plots, "pareto_info", lambda results, rec=None: drawn.append(rec) or real(results, rec))
    assert main(["plot", "--results", str(table_path), "--out", str(tmp_path), "--budget", "3%", *extra]) == 0
    capsys.readouterr()
    assert main(["recommend", "--results", str(table_path), "--budget", "3%", "--json", *extra]) == 0
    printed = json.loads(capsys.readouterr().out)
    (plotted,) = drawn
    assert (plotted["confidence"], plotted["relative"]) == (printed["confidence"], printed["relative"])
    # the same pick; its estimates agree to rounding (`recommend` may use the saved array form)
    ours, theirs = plotted["recommendation"], printed["recommendation"]
    numbers = [k for k, v in theirs.items() if isinstance(v, float)]
    assert {k: v for k, v in ours.items() if k not in numbers} == {k: v for k, v in theirs.items() if k not in numbers}
    assert [ours[k] for k in numbers] == pytest.approx([theirs[k] for k in numbers], rel=1e-9)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--budget", "abc"], "budget 'abc'"),
        (["--budget", "3"], "did you mean 3%"),
        (["--results", "nowhere/trials.csv"], "nowhere/trials.csv"),
    ],
)
def test_cli_plot_bad_input_is_one_line_exit_2(tmp_path, table_path, capsys, extra, expected):
    argv = ["plot", "--results", str(table_path), "--out", str(tmp_path)] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("autoprumux: error:") and err.count("\n") == 1 and expected in err
    assert not list(tmp_path.glob("*.png"))


def test_cli_plot_defaults_to_the_newest_table(tmp_path, table_path, monkeypatch, capsys):
    (tmp_path / "results" / "old").mkdir(parents=True)
    pd.DataFrame(HAND_MADE[:1], columns=["mux", "sparsity", "accuracy", "throughput"]).to_csv(
        tmp_path / "results" / "old" / "trials.csv", index=False)  # one configuration: unusable
    os.utime(tmp_path / "results" / "old" / "trials.csv", (1e9, 1e9))
    (tmp_path / "results" / "new").mkdir()
    for saved in table_path.parent.iterdir():  # the table and its saved models
        (tmp_path / "results" / "new" / saved.name).write_bytes(saved.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "--out", "plots"]) == 0
    out = capsys.readouterr().out
    assert "results/new/trials.csv" in out.splitlines()[0]
    assert (tmp_path / "plots" / "pareto.svg").is_file()


def test_cli_plot_without_baseline_is_one_line_exit_2(tmp_path, hand_made, capsys):
    path = tmp_path / "trials.csv"
    hand_made[hand_made["sparsity"] > 0].to_csv(path, index=False)
    assert main(["plot", "--results", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no baseline row" in err


def test_import_leaves_torch_out():
    code = "import sys, autoprumux.plots; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
