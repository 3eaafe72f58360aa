"""autoprumux.meta: budget, table loading, the optimizer's contract, the CLI and staying torch-free.

Model quality (recovery, oracle agreement, violations) is in test_meta_models.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from autoprumux import cli
from autoprumux.errors import BudgetError, TableError
from autoprumux.meta import (
    accuracy_floor,
    fit_performance_models,
    load_or_fit_models,
    load_results,
    parse_budget,
    recommend,
    results_from_frame,
    suggest,
    synthetic_table,
)
from autoprumux.meta.selection import MODELS_FILENAME
from autoprumux.meta.suggestion import certification_probability, constrained_expected_improvement

ESTIMATE_KEYS = {
    "mux",
    "sparsity",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "throughput",
    "throughput_low",
    "throughput_high",
    "speedup",
    "measured",
    "measured_accuracy",
    "measured_throughput",
    "probability_within_budget",
}
TOP_KEYS = {
    "budget",
    "relative",
    "confidence",
    "baseline_accuracy",
    "accuracy_floor",
    "recommendation",
    "alternatives",
    "models",
    "warnings",
    "near_miss",
}


@pytest.fixture(autouse=True)
def _one_thread():
    # meta never imports torch; only cap its threads if another test module already did
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@pytest.fixture(scope="module")
def noisy_table() -> pd.DataFrame:
    return synthetic_table(accuracy_noise=0.003, throughput_noise=0.03, sparsity_jitter=0.004, seed=3)


@pytest.fixture(scope="module")
def fitted(noisy_table):
    results = results_from_frame(noisy_table, source="noisy")
    return results, fit_performance_models(results)


@pytest.fixture()
def table_path(tmp_path, noisy_table):
    path = tmp_path / "trials.csv"
    noisy_table.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------------------------- budget


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3%", 0.03),
        ("0.03", 0.03),
        (" 2.5 % ", 0.025),
        ("0", 0.0),
        ("0%", 0.0),
        (0.05, 0.05),
        ("99.9%", 0.999),
    ],
)
def test_parse_budget_accepts_percent_and_fraction(text, expected):
    assert parse_budget(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["3", "abc", "-1%", "150%", "100%", "1", "", "%", "nan", "inf%", "-0.01"])
def test_parse_budget_rejects_with_value_and_accepted_form(text):
    with pytest.raises(BudgetError) as info:
        parse_budget(text)
    message = str(info.value)
    assert repr(text) in message
    assert "a percentage like 3% or a fraction like 0.03 in [0, 100%)" in message


def test_bare_number_hints_percent():
    with pytest.raises(BudgetError, match=r"did you mean 3%"):
        parse_budget("3")


def test_accuracy_floor_absolute_and_relative():
    assert accuracy_floor(0.90, 0.03) == pytest.approx(0.87)
    assert accuracy_floor(0.90, 0.03, relative=True) == pytest.approx(0.873)


# --------------------------------------------------------------------------------------------- tables


def test_baseline_is_mean_of_repeats_and_failed_rows_are_ignored(tmp_path):
    table = synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5), repeats=2, accuracy_noise=0.01, seed=1)
    failed = table.iloc[[0]].assign(status="FAIL", accuracy=np.nan, mux=4)
    path = tmp_path / "t.csv"
    pd.concat([table, failed]).to_csv(path, index=False)
    results = load_results(path)
    base = table[(table["mux"] == 1) & (table["sparsity_target"] == 0)]
    assert results.baseline_accuracy == pytest.approx(base["accuracy"].mean())
    assert len(results.configurations) == 4
    assert set(results.configurations["repeats"]) == {2}
    assert 4 not in set(results.configurations["mux"])


def test_grid_identity_uses_sparsity_target_and_features_use_measured():
    table = synthetic_table(mux=(1, 2), sparsity=(0.0, 0.7), repeats=3, sparsity_jitter=0.01, seed=2)
    results = results_from_frame(table)
    assert sorted(results.configurations["sparsity"]) == [0.0, 0.0, 0.7, 0.7]
    pruned = results.configurations[results.configurations["sparsity"] == 0.7]
    assert not np.allclose(pruned["feature_sparsity"], 0.7)  # the measured mean, not the target
    no_target = results_from_frame(table.drop(columns="sparsity_target"))
    assert len(no_target.configurations) > len(results.configurations)  # each jittered row is its own point


def test_a_fully_pruned_encoder_is_modelled_at_the_feature_ceiling():
    from autoprumux.meta.results import MAX_FEATURE_SPARSITY

    table = synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5, 0.9))
    table.loc[(table.mux == 2) & (table.sparsity_target == 0.9), "sparsity"] = 1.0  # measured: nothing left
    results = results_from_frame(table)
    assert results.rows["sparsity"].max() == MAX_FEATURE_SPARSITY
    models = fit_performance_models(results)
    assert np.isfinite(recommend(results, 0.03, models=models).recommendation.accuracy)


def test_measurement_error_comes_from_eval_examples():
    table = synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5), repeats=2, accuracy_noise=0.01, seed=3)
    assert results_from_frame(table).configurations["accuracy_se"].isna().all()
    table["eval_examples"] = 1000
    results = results_from_frame(table)
    rows = results.rows
    p = (rows["accuracy"] * 1000 + 1) / 1002
    variance = (p * (1 - p) / 1002).groupby([rows["mux"], rows["config_sparsity"]]).mean().to_numpy()
    # two repeats on one dev set share its sampling error: their mean keeps it (not divided by 2)
    assert np.allclose(results.configurations["accuracy_se"], np.sqrt(variance))
    # the models see one row per configuration: that variance once, plus the spread of the
    # repeats around their mean (a training seed's variance, pooled) over the 2 of them
    X, y, known, _ = results.accuracy_data()
    mean = rows.groupby(["mux", "config_sparsity"])["accuracy"].transform("mean")
    seed = float(((rows["accuracy"] - mean) ** 2).sum() / (len(rows) - len(y)))
    assert results.seed_variance == pytest.approx(seed) and seed > 0
    assert len(y) == 4 and np.allclose(known, variance + seed / 2)
    assert np.allclose(y, results.configurations["accuracy"])


def test_a_lucky_spread_of_one_repeat_does_not_widen_every_row():
    # 16 configurations measured once with 0.2 point of noise, one measured twice 4 points apart:
    # the pooled spread (one degree of freedom) is 200 times the noise's variance; told it, the
    # model would give every row measured once that variance. The models are told at most the
    # noise fitted beyond the binomial variance when each configuration counts as one measurement.
    from autoprumux.meta.selection import training_seed_variance

    table = synthetic_table(mux=(1, 2, 4, 8), sparsity=(0.0, 0.3, 0.5, 0.7), accuracy_noise=0.002, seed=4)
    twice = table[(table["mux"] == 2) & (table["sparsity_target"] == 0.5)].assign(accuracy=lambda t: t["accuracy"] - 0.04)
    results = results_from_frame(pd.concat([table, twice], ignore_index=True))
    assert results.seed_variance == pytest.approx(0.04**2 / 2)
    told = training_seed_variance(results)
    assert 0 < told < results.seed_variance / 10
    models = fit_performance_models(results)
    assert models.seed_variance == told
    once = results.accuracy_data(told)[3]["repeats"].to_numpy() == 1
    assert np.allclose(models.fit_params["accuracy"]["noise_variance"][once], told)
    # a spread within the fitted noise is kept as it is
    close = results_from_frame(pd.concat([table, twice.assign(accuracy=twice["accuracy"] + 0.0395)], ignore_index=True))
    assert training_seed_variance(close) == close.seed_variance > 0


def test_measured_configurations_with_a_known_error_are_estimated_by_the_measurement():
    from autoprumux.meta.optimizer import accuracy_estimates

    candidates = pd.DataFrame({"measured": [True, False, True], "measured_accuracy": [0.80, np.nan, 0.70],
                               "measured_accuracy_se": [0.01, np.nan, np.nan]})
    mean, std = accuracy_estimates(np.array([0.90, 0.85, 0.75]), np.array([0.03, 0.03, 0.03]), candidates)
    assert (mean[0], std[0]) == (0.80, 0.01)
    assert (mean[1], std[1]) == (0.85, 0.03) and (mean[2], std[2]) == (0.75, 0.03)  # unknown se: the model's


def test_the_posterior_at_a_measured_point_combines_it_with_the_model():
    # binomial noise over 2,000 examples: the model's std at a measured point is at most the
    # measurement's own standard error, and its mean stays within a few of them of the measurement
    from autoprumux.meta.surfaces import make_case

    results = results_from_frame(make_case("smooth", 5, noise="binomial").table.assign(eval_examples=2000))
    models = fit_performance_models(results)
    configs = results.configurations[~results.configurations["collapsed"]]
    pred = models.predict(configs[["mux", "feature_sparsity"]].to_numpy(float))
    se = configs["accuracy_se"].to_numpy()
    assert models.accuracy.std_source == "native"
    assert np.all(pred["accuracy_std"] <= 1.2 * se), (pred["accuracy_std"] / se).max()
    assert np.all(np.abs(pred["accuracy"] - configs["accuracy"]) <= 4 * se)


def test_baseline_override_and_missing_baseline():
    table = synthetic_table(mux=(2, 5), sparsity=(0.0, 0.5))
    with pytest.raises(TableError, match="no baseline row"):
        results_from_frame(table)
    assert results_from_frame(table, baseline_accuracy=0.91).baseline_accuracy == 0.91


def test_default_table_is_newest_results_trials(tmp_path, monkeypatch):
    old, new = tmp_path / "results" / "a" / "trials.csv", tmp_path / "results" / "b" / "trials.csv"
    for path, seed in ((old, 0), (new, 1)):
        path.parent.mkdir(parents=True)
        synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5), accuracy_noise=0.01, seed=seed).to_csv(
            path, index=False
        )
    os.utime(old, (time.time() - 100, time.time() - 100))
    monkeypatch.chdir(tmp_path)
    assert load_results().source == os.path.join("results", "b", "trials.csv")
    monkeypatch.chdir(tmp_path / "results")
    with pytest.raises(TableError, match=r"results/\*/trials.csv"):
        load_results()


# --------------------------------------------------------------------------------------------- optimizer


def test_recommendation_json_shape(fitted):
    results, models = fitted
    out = recommend(results, "3%", models=models).to_dict()
    assert set(out) == TOP_KEYS
    assert set(out["recommendation"]) == ESTIMATE_KEYS
    assert len(out["alternatives"]) == 3
    assert all(set(a) == ESTIMATE_KEYS for a in out["alternatives"])
    assert out["near_miss"] is None or set(out["near_miss"]) == ESTIMATE_KEYS
    assert {"accuracy", "throughput", "table"} <= set(out["models"])
    json.dumps(out)  # plain JSON types only
    rec = out["recommendation"]
    assert out["accuracy_floor"] == pytest.approx(out["baseline_accuracy"] - 0.03)
    assert rec["accuracy_low"] >= out["accuracy_floor"]
    assert rec["accuracy_low"] <= rec["accuracy"] <= rec["accuracy_high"]
    assert rec["throughput_low"] <= rec["throughput"] <= rec["throughput_high"]
    assert all(a["throughput"] <= rec["throughput"] * 1.02 for a in out["alternatives"])
    if not rec["measured"]:
        assert rec["measured_accuracy"] is None and rec["measured_throughput"] is None


def test_larger_budget_is_never_slower(fitted):
    results, models = fitted
    throughputs = [
        recommend(results, b, models=models).recommendation.throughput for b in (0.01, 0.02, 0.04, 0.08)
    ]
    assert throughputs == sorted(throughputs)
    assert throughputs[-1] > 3 * throughputs[0]


def test_infeasible_budget_returns_baseline_with_reason(fitted):
    results, models = fitted
    rec = recommend(results, "0%", models=models)
    out = rec.to_dict()
    assert not rec.feasible and "reason" in out and "floor" in out["reason"]
    assert (out["recommendation"]["mux"], out["recommendation"]["sparsity"]) == (1, 0.0)
    assert out["alternatives"] == []


def test_relative_budget_moves_the_floor(fitted):
    results, models = fitted
    rec = recommend(results, "3%", models=models, relative=True)
    assert rec.accuracy_floor == pytest.approx(results.baseline_accuracy * 0.97)


def test_choices_restrict_the_candidates(fitted):
    results, models = fitted
    rec = recommend(results, "5%", models=models, mux_choices=[1, 2], sparsity_choices=[0.0, 0.6])
    picks = [rec.recommendation, *rec.alternatives]
    assert {p.mux for p in picks} <= {1, 2} and {p.sparsity for p in picks} <= {0.0, 0.6}
    assert all(p.measured for p in picks)


def test_near_ties_go_to_the_measured_configuration():
    results = results_from_frame(synthetic_table())
    models = fit_performance_models(results)
    kwargs = dict(models=models, mux_choices=[2], sparsity_choices=[0.5, 0.51])
    tie_broken = recommend(results, "20%", **kwargs).recommendation
    strict = recommend(results, "20%", near_tie=0.0, **kwargs).recommendation
    assert (tie_broken.sparsity, tie_broken.measured) == (0.5, True)
    assert (strict.sparsity, strict.measured) == (0.51, False)


def test_among_near_tied_measured_configurations_the_measured_throughput_decides():
    from autoprumux.meta.optimizer import choose

    scored = pd.DataFrame({"feasible": [True, True, True], "measured": [True, True, False],
                           "throughput": [100.0, 99.0, 90.0], "measured_throughput": [90.0, 110.0, np.nan]})
    assert choose(scored) == 1  # predicted 1% apart: the one measured faster wins
    assert choose(scored, near_tie=0.0) == 0  # no tie band: the prediction decides
    assert choose(scored.assign(feasible=[False, False, True])) == 2


def test_a_near_miss_is_a_faster_candidate_the_bound_narrowly_failed_to_certify():
    from autoprumux.meta.optimizer import near_miss

    # the pick (0) at 1000/s; then: certified and faster (not a miss), P 92%, P 85%, collapsed at
    # P 99%, P 99% but only 5% faster than the pick, and P 88% measured, 1% slower than row 3
    scored = pd.DataFrame({"feasible": [True, True, False, False, False, False, False],
                           "collapsed": [False, False, False, False, True, False, False],
                           "p_feasible": [0.99, 0.99, 0.92, 0.85, 0.99, 0.99, 0.88],
                           "throughput": [1000.0, 1200.0, 1500.0, 1800.0, 3000.0, 1050.0, 1782.0],
                           "measured": [True, True, False, False, False, False, True],
                           "measured_throughput": [1000.0, 1200.0, np.nan, np.nan, np.nan, np.nan, 1790.0]})  # fmt: skip
    assert near_miss(scored, 0, 0.95) == 2  # risk 8%, at most twice the 5% allowed
    assert near_miss(scored, 0, 0.90) == 6  # risk 15% <= 20%: row 3, but the measured row 6 ties it
    assert near_miss(scored, 0, 0.90, near_tie=0.0) == 3  # no tie band: the fastest
    assert near_miss(scored, 0, 0.99) is None  # only 1% risk may be doubled
    assert near_miss(scored, 1, 0.90) == 6 and near_miss(scored, 3, 0.90) is None


def test_warns_when_the_pick_is_on_the_edge_or_extrapolated(fitted):
    results, models = fitted
    edge = recommend(results, "30%", models=models)
    assert (edge.recommendation.mux, edge.recommendation.sparsity) == (10, 0.9)
    assert any("edge of what was measured" in w for w in edge.warnings)
    outside = recommend(results, "30%", models=models, mux_choices=[1, 16], sparsity_choices=[0.0, 0.5])
    assert outside.recommendation.mux == 16
    assert any("extrapolation" in w for w in outside.warnings)


def test_suggest_values_what_one_measurement_can_certify():
    # three equally fast candidates, floor 0.80, one measurement's std 0.005 (a 95% bound needs the
    # posterior mean about 0.8 points clear): well clear, unexplored but promising, and a hair
    # above the floor with a tight prediction that no single measurement can lift over the bar
    scored = pd.DataFrame({
        "accuracy": [0.830, 0.820, 0.802], "accuracy_std": [0.004, 0.015, 0.002],
        "throughput": [2000.0] * 3, "log_throughput_std": [0.05] * 3,
        "p_feasible": [1.0, 0.91, 0.84], "collapsed": [False, False, False],
    })  # fmt: skip
    certified = certification_probability(scored, 0.80, 0.95, 0.005**2)
    assert certified[0] > 0.99 and 0.6 < certified[1] < certified[0] and certified[2] < 0.1
    score, _ = constrained_expected_improvement(scored, 1000.0, certified)
    plain, _ = constrained_expected_improvement(scored, 1000.0)
    assert score[2] < 0.15 * plain[2] and np.argmax(score) == 0
    assert certification_probability(scored.assign(collapsed=True), 0.80, 0.95, 0.005**2).max() == 0


def test_another_measurement_certifies_a_repeat_less_often_the_more_it_was_measured_under_the_floor():
    # floor 0.80; the model puts the candidate at 0.806 +- 0.004. Unmeasured, with a new
    # measurement's noise 0.003^2, the posterior bound decides: the closed form of one Gaussian
    # update. At 0.81 with noise 0.01^2 the bound is easy, and the rule that the measurement itself
    # must not land under the floor binds first. Measured under the floor at 0.795, the mean of all measurements must clear it, and the
    # more repeats sit under it the higher the next one must land. Nothing left to average away
    # (infinite noise): no chance.
    from statistics import NormalDist

    N = NormalDist()
    rows = [(np.nan, np.nan, 0.003), (np.nan, np.nan, 0.01), (1, 0.795, 0.003), (3, 0.795, 0.003), (1, 0.795, np.inf)]
    scored = pd.DataFrame([{"accuracy": 0.81 if i == 1 else 0.806, "accuracy_std": 0.004, "collapsed": False,
                            "measured_repeats": k, "measured_accuracy": a} for i, (k, a, _) in enumerate(rows)])  # fmt: skip
    p = certification_probability(scored, 0.80, 0.95, np.array([r[2] for r in rows]) ** 2)
    s2, n = 0.004**2, 0.003**2
    v = 1 / (1 / s2 + 1 / n)
    assert p[0] == pytest.approx(N.cdf((0.806 - 0.80 - N.inv_cdf(0.95) * v**0.5) / (s2 - v) ** 0.5), rel=1e-9)
    assert p[1] == pytest.approx(N.cdf(0.01 / (s2 + 0.01**2) ** 0.5), rel=1e-9)
    assert p[0] > p[2] > p[3] > 0 and p[3] == pytest.approx(N.cdf((0.806 - 0.815) / (s2 + n) ** 0.5), rel=1e-9)
    assert p[4] == 0


def test_suggest_proposes_measuring_again_a_fast_configuration_measured_just_under_the_floor(tmp_path, capsys):
    # a smooth surface, training noise (0.4 points) beyond a small binomial error (a dev set of
    # tens of thousands), floor 0.835: the fastest
    # configuration within it (N = 8, s = 0.5, truly 0.840) measured 0.4 points under the floor by
    # bad luck. `recommend` cannot pick it (measured under the floor); `suggest` proposes a repeat.
    from autoprumux.meta.render import format_suggestions
    from autoprumux.meta.surfaces import Surface, measure

    surface = Surface(base=0.9, mux_drop=0.05, prune_drop=0.05, n_top=8, s_top=0.9)
    grid = pd.DataFrame([(n, s) for n in (1, 2, 4, 8) for s in (0.0, 0.5, 0.7, 0.9)], columns=["mux", "sparsity"])
    table = measure(surface, grid, "binomial", 0.0, False, np.random.default_rng(3), 0.004, noise_scale=0.3)
    floor = 0.835
    truth = surface.accuracy(table["mux"], table["sparsity"])
    fastest = table[truth > floor]["throughput"].idxmax()
    point = tuple(table.loc[fastest, ["mux", "sparsity"]])
    assert point == (8, 0.5)
    table.loc[fastest, "accuracy"] = floor - 0.004
    results = results_from_frame(table)
    budget = results.baseline_accuracy - floor
    rec = recommend(results, budget)
    assert (rec.recommendation.mux, rec.recommendation.sparsity) != point
    assert rec.recommendation.throughput < table.loc[fastest, "throughput"]
    assert not [s for s in suggest(results, budget, n=3, repeats=False).suggestions if s.repeat]
    sug = suggest(results, budget, n=3)  # repeats are proposed by default
    again = [s for s in sug.suggestions if s.repeat]
    assert [(s.mux, s.sparsity) for s in again] == [point]
    assert again[0].expected_gain > 0 and "another seed" in again[0].reason
    assert "again, another seed" in format_suggestions(sug)
    assert "autoprumux sweep SPEC --repeat 8,0.5 " in format_suggestions(sug)
    # the command line says the same by default and with --repeats, and leaves the repeat out
    # with --no-repeats
    path = tmp_path / "trials.csv"
    table.to_csv(path, index=False)
    for flag in ([], ["--repeats"]):
        code, out, _ = _run(capsys, "suggest", "--budget", str(budget), "--n", "3", "--results", str(path), "--json", *flag)
        assert code == 0 and [(s["mux"], s["sparsity"]) for s in json.loads(out)["suggestions"] if s["repeat"]] == [point]
    code, out, _ = _run(capsys, "suggest", "--budget", str(budget), "--results", str(path), "--json", "--no-repeats")
    assert code == 0 and not [s for s in json.loads(out)["suggestions"] if s["repeat"]]
    # a repeat that measures the same accuracy again (no training-seed noise after all) tells the
    # models nothing new: the point's posterior does not tighten, and no further repeat is proposed
    again_table = pd.concat([table.assign(seed=0), table.loc[[fastest]].assign(seed=1)], ignore_index=True)
    twice = results_from_frame(again_table)
    assert twice.seed_variance == 0
    X = np.array([point], float)
    once_std = fit_performance_models(results).predict(X)["accuracy_std"][0]
    twice_std = fit_performance_models(twice).predict(X)["accuracy_std"][0]
    assert twice_std == pytest.approx(once_std, rel=0.05)
    assert not [s for s in suggest(twice, budget, n=3, repeats=True).suggestions if s.repeat]


def test_suggestions_are_distinct_explained_and_flag_repeats(fitted):
    results, models = fitted
    sug = suggest(results, "3%", n=4, models=models, repeats=True)
    measured = set(zip(results.configurations["mux"], results.configurations["sparsity"], strict=True))
    points = [(s.mux, s.sparsity) for s in sug.suggestions]
    assert len(points) == 4 and len(set(points)) == 4
    assert all(((s.mux, s.sparsity) in measured) == s.repeat for s in sug.suggestions)
    assert all("expected gain" in s.reason for s in sug.suggestions)
    assert sug.suggestions[0].expected_gain > 0
    rec = recommend(results, "3%", models=models, sparsity_choices=sorted(
        {*np.round(np.arange(0.0, 0.95, 0.05), 6), *results.configurations["sparsity"]}))  # fmt: skip
    assert (sug.incumbent["mux"], sug.incumbent["sparsity"]) == (rec.recommendation.mux, rec.recommendation.sparsity)


def test_a_suggestion_of_the_unmeasured_pick_itself_says_so():
    # on this generated table `recommend` picks an unmeasured configuration, and measuring it is
    # the first suggestion (it may well be faster than predicted); the reason names it as the pick
    from autoprumux.meta.surfaces import make_case

    results = results_from_frame(make_case("smooth", 0).table)
    sug = suggest(results, "3%", n=3)
    pick = (sug.incumbent["mux"], sug.incumbent["sparsity"])
    own = [s for s in sug.suggestions if (s.mux, s.sparsity) == pick]
    assert len(own) == 1 and not own[0].repeat
    assert own[0].reason.startswith("the current recommendation itself")
    assert not any(s.reason.startswith("the current recommendation") for s in sug.suggestions if s is not own[0])


def test_models_are_saved_beside_the_table_and_refitted_when_it_changes(table_path):
    results = load_results(table_path)
    _, status = load_or_fit_models(results)
    assert "saved" in status and (table_path.parent / MODELS_FILENAME).is_file()
    assert (table_path.parent / "performance_models.npz").is_file()
    _, status = load_or_fit_models(load_results(table_path))
    assert status.startswith("models loaded")
    frame = pd.read_csv(table_path)
    frame.loc[3, "accuracy"] -= 0.01
    frame.to_csv(table_path, index=False)
    _, status = load_or_fit_models(load_results(table_path))
    assert "fitted" in status


# --------------------------------------------------------------------------------------------- CLI


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_fit_then_recommend_json(capsys, table_path):
    code, out, _ = _run(capsys, "fit", "--results", str(table_path))
    assert code == 0 and "separable" in out and "gp" in out and "MAE, points" in out and "MAPE, %" in out
    assert (table_path.parent / MODELS_FILENAME).is_file()
    code, out, err = _run(capsys, "recommend", "--budget", "3%", "--results", str(table_path), "--json")
    assert code == 0 and "models loaded" in err
    payload = json.loads(out)
    assert set(payload) == TOP_KEYS and payload["budget"] == 0.03
    code, out, _ = _run(
        capsys,
        "recommend",
        "--budget",
        "0.02",
        "--results",
        str(table_path),
        "--mux-choices",
        "1,2,5",
        "--sparsity-choices",
        "0,0.6",
        "--confidence",
        "0.95",
        "--relative",
        "--baseline-accuracy",
        "0.9",
    )
    assert code == 0 and "recommended" in out and "runner-up 1" in out and "0.8820" in out  # floor 0.9 * 0.98


def test_cli_suggest_and_evaluate(capsys, table_path):
    code, out, _ = _run(capsys, "suggest", "--budget", "3%", "--n", "2", "--results", str(table_path))
    assert code == 0 and "\n1. N=" in out and "\n2. N=" in out and "\n3. N=" not in out
    code, out, _ = _run(
        capsys,
        "evaluate",
        "--results",
        str(table_path),
        "--splits",
        "2",
        "--holdout",
        "3",
        "--budgets",
        "2%,5%",
    )
    assert code == 0 and "mean regret" in out and "5.0%" in out
    assert "coverage of the one-sided accuracy bound on hidden configurations" in out and "at 90%" in out


def _write(tmp_path, frame: pd.DataFrame | str) -> str:
    path = tmp_path / "bad.csv"
    if isinstance(frame, str):
        path.write_text(frame)
    else:
        frame.to_csv(path, index=False)
    return str(path)


def _bad_tables(tmp_path):
    good = synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5))
    nan = good.copy()
    nan.loc[1, "accuracy"] = np.nan
    return {
        "empty": _write(tmp_path, "mux,sparsity,accuracy,throughput\n"),
        "zero bytes": _write(tmp_path, ""),
        "one configuration": _write(tmp_path, good[good["mux"] == 1].iloc[[0, 0]]),
        "no baseline": _write(tmp_path, good[good["mux"] == 2]),
        "nan": _write(tmp_path, nan),
        "missing": str(tmp_path / "nope" / "trials.csv"),
    }


@pytest.mark.parametrize(
    "case", ["empty", "zero bytes", "one configuration", "no baseline", "nan", "missing"]
)
def test_cli_bad_tables_are_one_line_errors(capsys, tmp_path, case):
    path = _bad_tables(tmp_path)[case]
    code, out, err = _run(capsys, "recommend", "--budget", "3%", "--results", path)
    assert code == 2 and out == ""
    assert err.startswith("autoprumux: error:") and err.count("\n") == 1


@pytest.mark.parametrize("budget", ["3", "abc", "-1%", "150%"])
def test_cli_bad_budgets_are_one_line_errors(capsys, table_path, budget):
    # `--budget=-1%`: argparse reads a separate "-1%" as an option (that is a one-line error too)
    code, out, err = _run(capsys, "recommend", f"--budget={budget}", "--results", str(table_path))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert repr(budget) in err and "3%" in err
    code, out, err = _run(capsys, "recommend", "--budget", budget, "--results", str(table_path))
    assert code == 2 and out == "" and err.startswith("autoprumux: error:") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--confidence", "1.5"), "1.5"),
        (("--mux-choices", "1,x"), "'1,x'"),
        (("--mux-choices", "0,2"), "mux choice 0"),
        (("--sparsity-choices", "0,1.2"), "sparsity choice 1.2"),
        (("--n", "0"), "'0'"),
    ],
)
def test_cli_bad_options_are_one_line_errors(capsys, table_path, flags, named):
    code, _, err = _run(capsys, "suggest", "--budget", "3%", "--results", str(table_path), *flags)
    assert code == 2 and err.startswith("autoprumux: error:") and err.count("\n") == 1
    assert named in err


def _recommend_in_fresh_interpreter(table_path) -> tuple[dict, list[str]]:
    script = textwrap.dedent(
        f"""
        import json, sys
        import autoprumux.meta
        from autoprumux import cli
        assert cli.main(["recommend", "--budget", "3%", "--results", {str(table_path)!r}, "--json"]) == 0
        print(json.dumps([m for m in ("torch", "transformers", "sklearn") if m in sys.modules]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    payload, _, loaded = done.stdout.rpartition("\n[")
    return json.loads(payload), json.loads("[" + loaded)


def test_recommend_does_not_import_torch_and_cached_models_skip_sklearn(table_path):
    first, loaded = _recommend_in_fresh_interpreter(table_path)  # fits (scikit-learn) and saves
    assert "torch" not in loaded and "transformers" not in loaded
    assert (table_path.parent / "performance_models.npz").is_file()
    again, loaded = _recommend_in_fresh_interpreter(table_path)  # the saved arrays: numpy only
    assert loaded == []
    assert _rounded(again) == _rounded(first)  # the arrays predict what scikit-learn does (to rounding)


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return float(f"{value:.10g}") if isinstance(value, float) else value
