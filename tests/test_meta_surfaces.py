"""The generated-surface suite (meta/surfaces.py) and what the recommender does on it: collapsed
widths, monotone accuracy, throughput that peaks at a middle N or follows FLOPs, calibrated
bounds, and picks that beat the best measured row. Small cases, fast, against known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoprumux.meta import evaluate, fit_performance_models, recommend, results_from_frame
from autoprumux.meta.replay import baseline_index, coverage, grid_index, regret_of
from autoprumux.meta.results import mux_sparsity_features
from autoprumux.meta.structured import AdditiveThroughputModel, MonotoneGPModel
from autoprumux.meta.surfaces import FAMILIES, GRIDS, Surface, make_case, random_surface
from autoprumux.meta.terms import trend_design


def _choices(case):
    return {"mux_choices": sorted(set(case.grid["mux"])), "sparsity_choices": sorted(set(case.grid["sparsity"]))}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_case_has_the_baseline_and_about_half_its_grid(family):
    for seed in range(4):
        case = make_case(family, seed)
        assert 35 <= len(case.grid) <= 42
        assert 0.35 <= len(case.table) / len(case.grid) <= 0.65
        assert ((case.table["mux"] == 1) & (case.table["sparsity"] == 0)).any()
        assert ("eval_examples" in case.table.columns) == (case.noise == "binomial")


def test_families_show_their_behaviour():
    rng = np.random.default_rng(0)
    mux, sparsity = GRIDS[3]
    peak = random_surface("peak", GRIDS[3], rng)
    fastest = mux[int(np.argmax(peak.throughput(np.array(mux), 0.0)))]
    assert 1 < fastest < max(mux)
    dead = random_surface("dead", GRIDS[3], rng)
    assert np.all(dead.accuracy(dead.dead_mux, np.array(sparsity)) == dead.chance)
    knee = random_surface("knee", GRIDS[3], rng)
    flat = np.linspace(0.0, knee.knee, 5)
    assert np.allclose(knee.accuracy(1, flat), knee.base)
    smooth = Surface()
    assert np.all(np.diff(smooth.accuracy(np.array(mux), 0.5)) < 0)
    assert np.all(np.diff(smooth.accuracy(2, np.array(sparsity))) < 0)


def test_a_width_that_never_trained_is_detected_excluded_and_warned_about():
    case = make_case("dead", 3, measured_fraction=0.6)
    results = results_from_frame(case.table)
    dead = case.surface.dead_mux
    assert set(results.configurations.loc[results.configurations["collapsed"], "mux"]) == {dead}
    models = fit_performance_models(results)
    assert not np.any(models.accuracy_X[:, 0] == dead)  # left out of the smooth fit
    for budget in (0.01, 0.03, 0.05):
        rec = recommend(results, budget, models=models, **_choices(case))
        assert rec.recommendation.mux != dead
    assert any(f"N={dead}" in w and "collapsed" in w for w in rec.warnings)


def test_recommend_names_a_faster_configuration_it_narrowly_failed_to_certify():
    # at a quarter of the suite's noise, N = 2 at s = 0 is truly 0.04 point above the 1% floor and
    # measured 0.26 point above it, which the 95% bound cannot certify: the pick stays the baseline,
    # at half the speed, and recommend says what it left behind
    from autoprumux.meta.render import format_recommendation

    case = make_case("smooth", 20, noise_scale=0.25)
    results = results_from_frame(case.table, source=case.name)
    models = fit_performance_models(results)
    rec = recommend(results, 0.01, models=models, **_choices(case))
    miss = rec.near_miss
    assert (rec.recommendation.mux, rec.recommendation.sparsity) == (1, 0.0)
    assert (miss.mux, miss.sparsity, miss.measured) == (2, 0.0, True)
    assert 0.90 <= miss.probability_within_budget < 0.95 and miss.throughput > 1.5 * rec.recommendation.throughput
    floor = rec.accuracy_floor
    assert case.grid.loc[grid_index(case.grid, 2, 0.0), "accuracy"] >= floor  # truly within budget
    assert any(w.startswith("N=2, s=0.00 is predicted") and "short of the 95% asked" in w for w in rec.warnings)
    assert "near miss    2  0.00" in format_recommendation(rec)
    relaxed = recommend(results, 0.01, models=models, confidence=0.9, **_choices(case))
    assert (relaxed.recommendation.mux, relaxed.recommendation.sparsity) == (2, 0.0)
    assert relaxed.near_miss is None or relaxed.near_miss.probability_within_budget < 0.9


def test_a_table_with_one_configuration_above_chance_is_a_clear_error(tmp_path, capsys):
    from autoprumux.cli import main

    case = make_case("dead", 5201)
    table = case.table
    dead = table[(table["mux"] == 2) & (table["sparsity"] == 0.0)]
    assert len(dead) and (dead["accuracy"] < 0.6).all()  # width 2 never trained in this case
    path = tmp_path / "trials.csv"
    pd.concat([table[(table["mux"] == 1) & (table["sparsity"] == 0.0)], dead]).to_csv(path, index=False)
    assert main(["recommend", "--results", str(path), "--budget", "3%"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("autoprumux: error:") and "only 1 of its 2 configurations" in err, err


def test_chance_is_inferred_without_num_labels():
    case = make_case("dead", 3, measured_fraction=0.6)
    results = results_from_frame(case.table.drop(columns="num_labels"))
    assert results.chance == pytest.approx(case.surface.chance)
    assert results.configurations["collapsed"].any()


def test_the_monotone_model_never_rises_with_n_or_s():
    case = make_case("smooth", 4, noise="gaussian")
    results = results_from_frame(case.table)
    model = MonotoneGPModel(residual_gp=False).fit(results.features, results.rows["accuracy"])
    mux, sparsity = np.meshgrid([1, 1.5, 2, 3, 5, 8, 16], np.linspace(0, 0.95, 20), indexing="ij")
    pred = model.predict(np.c_[mux.ravel(), sparsity.ravel()]).reshape(mux.shape)
    assert np.all(np.diff(pred, axis=0) <= 1e-12) and np.all(np.diff(pred, axis=1) <= 1e-12)


def test_the_trend_bound_counts_the_error_of_its_searched_powers():
    # the powers of N and s are fitted like the slopes: their error must widen the bound most
    # where the trend extrapolates, and leave it near the fixed-power one inside the data
    case = make_case("smooth", 4, noise="gaussian")
    results = results_from_frame(case.table)
    X, y = results.features, results.rows["accuracy"]
    searched = MonotoneGPModel(residual_gp=False).fit(X, y)
    fixed = MonotoneGPModel(residual_gp=False, fixed_powers=tuple(searched.trend_powers_)).fit(X, y)
    assert np.allclose(searched.predict(X), fixed.predict(X))
    beyond = np.array([[64.0, 0.0], [1.0, 0.99]])
    _, wide = searched.predict(beyond, return_std=True)
    _, narrow = fixed.predict(beyond, return_std=True)
    assert np.all(wide > 1.5 * narrow), (wide, narrow)
    _, inside_searched = searched.predict(X, return_std=True)
    _, inside_fixed = fixed.predict(X, return_std=True)
    assert np.median(inside_searched / inside_fixed) < 1.5


def test_with_the_residual_gp_the_std_is_that_of_a_gp_with_the_trend_as_explicit_basis():
    # For a fixed shape, trend + GP is a GP with explicit basis functions h(x) (Rasmussen and
    # Williams 2006, section 2.7): its posterior variance is that of a GP whose kernel adds
    # B h(x)'h(x') with B -> infinity, which this test computes directly.
    case = make_case("smooth", 3, noise="binomial")
    results = results_from_frame(case.table)
    X, y, known, _ = results.accuracy_data()
    first = MonotoneGPModel().fit(X, y, noise_variance=known)
    model = MonotoneGPModel(fixed_powers=tuple(first.trend_powers_), fixed_kernel=first.gp_.kernel_)
    model.fit(X, y, noise_variance=known)
    grid = case.grid[["mux", "sparsity"]].to_numpy(float)
    _, std = model.predict(grid, return_std=True)

    gp, scale = model.gp_, model.y_scale_
    Z = (mux_sparsity_features(X) - model.scaler_mean_) / model.scaler_scale_
    G = (mux_sparsity_features(grid) - model.scaler_mean_) / model.scaler_scale_
    h, h_grid = (trend_design(mux_sparsity_features(A), *model.trend_powers_) for A in (X, grid))
    prior = 100.0  # B, in accuracy units squared: vague next to any accuracy
    K = scale**2 * gp.kernel_.k1(Z) + prior * h @ h.T
    noise = scale**2 * (gp.kernel_.k2.noise_level + gp.alpha)  # white + known (alpha is known / scale^2)
    cross = scale**2 * gp.kernel_.k1(Z, G) + prior * h @ h_grid.T
    prior_var = scale**2 * np.diag(gp.kernel_.k1(G)) + prior * (h_grid**2).sum(1)
    posterior = prior_var - np.einsum("ij,ij->j", cross, np.linalg.solve(K + np.diag(noise), cross))
    np.testing.assert_allclose(std, np.sqrt(posterior), rtol=1e-3)


def test_the_fitted_noise_is_not_shrunk_by_the_trends_parameters():
    # 20 rows of a smooth decreasing surface plus white noise of known sd, nothing else: the
    # fitted extra noise should be the noise's variance on average. Plain maximum likelihood on the
    # trend's residuals finds about 0.68 of it here; the restricted likelihood about 0.95.
    grid = np.array([[n, s] for n in (1, 2, 4, 8) for s in (0.0, 0.5, 0.7, 0.8, 0.9)], float)
    truth = Surface(base=0.9, mux_drop=0.02, prune_drop=0.03, n_top=8).accuracy(grid[:, 0], grid[:, 1])
    sd = 0.005
    ratios = []
    for seed in range(30):
        y = truth + np.random.default_rng(seed).normal(0.0, sd, len(truth))
        ratios.append(MonotoneGPModel().fit(grid, y).noise_ / sd**2)
    assert 0.85 < np.mean(ratios) < 1.15, np.mean(ratios)


def test_the_residual_gp_finds_the_noise_mode_when_it_is_the_likelier_one():
    # one point of training noise and 0.2-0.5 point of Gaussian evaluation noise, neither known to
    # the model: from the kernel's own start alone, maximum likelihood stopped at a rough signal
    # (amplitude 1.5, length scale at its floor) with the white noise at its floor, 0.14 point of
    # noise in all, less likely (-32.5) than explaining the residuals as noise (-31.3)
    case = make_case("peak", 1006, training_noise=0.01)
    X, y, known, _ = results_from_frame(case.table).accuracy_data()
    model = MonotoneGPModel().fit(X, y, noise_variance=known)
    truth = case.surface.accuracy(X[:, 0].astype(int), X[:, 1])
    spread = np.sqrt(np.mean((y - truth) ** 2))  # what the rows are off their truth (about 0.9 point)
    assert 0.6 * spread < np.sqrt(model.noise_) < 1.6 * spread, (np.sqrt(model.noise_), spread)


def test_the_trend_finds_a_pruning_knee_and_keeps_none_on_a_smooth_surface():
    knee = Surface(knee=0.7, q=2.5, prune_drop=0.12)
    mux, sparsity = (a.ravel() for a in np.meshgrid([1, 2, 4, 8], [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9], indexing="ij"))
    X = np.c_[mux, sparsity]
    held = np.array([[2, 0.75], [4, 0.85], [8, 0.65]])
    for surface, wants_knee in ((knee, True), (Surface(), False)):
        model = MonotoneGPModel(residual_gp=False).fit(X, surface.accuracy(mux, sparsity))
        assert (model.trend_powers_[2] > 0) == wants_knee, model.trend_powers_
    no_knee = MonotoneGPModel(residual_gp=False, fixed_powers=(0.0, 2.5)).fit(X, knee.accuracy(mux, sparsity))
    with_knee = MonotoneGPModel(residual_gp=False).fit(X, knee.accuracy(mux, sparsity))
    truth = knee.accuracy(held[:, 0], held[:, 1])
    assert np.abs(with_knee.predict(held) - truth).max() < 0.5 * np.abs(no_knee.predict(held) - truth).max()


def test_the_free_sign_trend_stays_bounded_when_one_row_lies_beyond_its_knee():
    # this case measures one row at its top sparsity: a knee just under the next level made the
    # sparsity and interaction columns almost equal, and unpenalised least squares gave them
    # opposite slopes of 1e11 (predicted accuracies of 1e9, so recommend picked them at 95%)
    case = make_case("knee", 3027)
    table = case.table
    assert (table["sparsity"] == table["sparsity"].max()).sum() == 1
    y = table["accuracy"].to_numpy()
    variance = y * (1 - y) / table["eval_examples"].to_numpy(float)
    model = MonotoneGPModel(monotone=False).fit(table[["mux", "sparsity"]].to_numpy(float), y, variance)
    error = model.predict(case.grid[["mux", "sparsity"]].to_numpy(float)) - case.grid["accuracy"].to_numpy()
    assert np.abs(error).max() < 0.15, np.abs(error).max()


def test_the_trend_search_survives_a_table_it_fits_exactly():
    # a few rows that a trend fits exactly (a small cross-validation fold, a flat table) leave
    # residuals whose squares underflow: comparing them by a ratio of squares divided 0 by 0
    X = np.array([[1, 0.0], [2, 0.0], [1, 0.5], [2, 0.5], [1, 0.9]])
    for y in (np.full(5, 0.8), 0.9 - 0.05 * np.log(X[:, 0]) - 0.1 * X[:, 1] ** 2):
        for monotone in (True, False):
            model = MonotoneGPModel(residual_gp=False, monotone=monotone).fit(X, y)
            assert np.abs(model.predict(X) - y).max() < 0.01


def test_throughput_follows_a_mid_n_peak_and_flops():
    case = make_case("peak", 2, throughput_noise=0.0, flops=True, measured_fraction=0.6)
    results = results_from_frame(case.table)
    X, y = results.features, np.log(results.rows["throughput"].to_numpy())
    grid = case.grid[["mux", "sparsity"]].to_numpy(float)
    for flops in (None, results.flops):
        model = AdditiveThroughputModel().fit(X, y, flops=flops)
        error = np.abs(np.exp(model.predict(grid)) / case.grid["throughput"] - 1)
        assert error.max() < (0.01 if flops is not None else 0.15), error.max()
    at_zero = case.grid[case.grid["sparsity"] == 0]
    predicted = np.exp(model.predict(at_zero[["mux", "sparsity"]].to_numpy(float)))
    assert at_zero["mux"].iloc[int(np.argmax(predicted))] == at_zero.loc[at_zero["throughput"].idxmax(), "mux"]


CASES = [make_case(family, 100 + seed) for family in FAMILIES for seed in range(2)]


@pytest.fixture(scope="module")
def fitted_cases():
    return [(case, results_from_frame(case.table)) for case in CASES]


@pytest.fixture(scope="module")
def models_of(fitted_cases):
    return [fit_performance_models(results) for _, results in fitted_cases]


def test_the_bounds_are_calibrated_on_unmeasured_configurations(fitted_cases, models_of):
    hits = {0.9: [], 0.5: []}
    for (case, _), models in zip(fitted_cases, models_of, strict=True):
        pred = models.predict(case.grid[["mux", "sparsity"]].to_numpy(float))
        for level, share in coverage(case, pred["accuracy"], pred["accuracy_std"], (0.9, 0.5)).items():
            hits[level].append(share)
    assert 0.75 <= np.mean(hits[0.9]) <= 1.0, hits[0.9]
    assert 0.3 <= np.mean(hits[0.5]) <= 0.75, hits[0.5]


def test_recommend_beats_the_best_measured_row_and_rarely_violates(fitted_cases, models_of):
    ours, peer, violations = [], [], 0
    for (case, results), models in zip(fitted_cases, models_of, strict=True):
        for budget in (0.01, 0.03, 0.05):
            rec = recommend(results, budget, models=models, **_choices(case))
            pick = grid_index(case.grid, rec.recommendation.mux, rec.recommendation.sparsity)
            regret, violated = regret_of(case, rec.accuracy_floor, pick)
            ours.append(regret)
            violations += violated
            configs = results.configurations
            ok = configs[configs["accuracy"] >= rec.accuracy_floor]
            best = ok.loc[ok["throughput"].idxmax()] if len(ok) else None
            row = baseline_index(case.grid) if best is None else grid_index(case.grid, best["mux"], best["sparsity"])
            peer.append(regret_of(case, rec.accuracy_floor, row)[0])
    assert np.mean(ours) < np.mean(peer), (np.mean(ours), np.mean(peer))
    assert violations <= 0.1 * len(ours), violations


def test_a_table_too_small_to_check_its_models_gets_a_measured_configuration():
    # three configurations: the trend passes through all of them, and its std at N = 10 (never
    # measured, and a width that never trains in this case) was 1.6 points, its error 41 points
    case = make_case("dead", 6201)
    table = case.table
    keep = [(1, 0.0), (1, 0.85), (5, 0.9)]
    table = table[[(m, s) in keep for m, s in zip(table["mux"], table["sparsity"].round(2), strict=True)]]
    results = results_from_frame(table)
    assert len(results.configurations) == 3
    models = fit_performance_models(results)
    for budget in (0.01, 0.03, 0.05):
        rec = recommend(results, budget, models=models, **_choices(case))
        assert (rec.recommendation.mux, round(rec.recommendation.sparsity, 2)) in keep
        assert not regret_of(case, rec.accuracy_floor, grid_index(case.grid, rec.recommendation.mux, rec.recommendation.sparsity))[1]
        assert any("only 3 configurations were measured" in w for w in rec.warnings)


def test_evaluate_reports_coverage_at_three_levels(fitted_cases):
    _, results = fitted_cases[0]
    ev = evaluate(results, budgets=("2%",), holdout=3, n_splits=2)
    assert set(ev.coverage) == {0.9, 0.8, 0.5}
    assert all(0.0 <= v <= 1.0 for v in ev.coverage.values())
    assert set(ev.to_dict()["coverage"]) == {"90%", "80%", "50%"}


def test_regret_against_the_clear_oracle_forgives_the_knife_edge():
    case = make_case("smooth", 7)
    floor = case.grid["accuracy"].iloc[baseline_index(case.grid)] - 0.02
    within = case.grid[case.grid["accuracy"] >= floor]
    edge = int(within["throughput"].idxmax())
    assert regret_of(case, floor, edge) == (0.0, False)
    clear = case.grid[case.grid["accuracy"] >= floor + 0.005]
    runner = int(clear["throughput"].idxmax())
    assert regret_of(case, floor, runner, margin=0.005) == (0.0, False)
    assert regret_of(case, floor, runner)[0] >= 0.0
    below = case.grid[case.grid["accuracy"] < floor].index
    if len(below):
        assert regret_of(case, floor, int(below[0]), margin=0.005) == (1.0, True)


def test_training_noise_keeps_the_case_and_is_fitted_as_noise_beyond_the_binomial():
    tau = 0.015
    excess = {0.0: [], tau: []}
    for seed in range(4):
        plain = make_case("smooth", seed, noise="binomial", measured_fraction=0.6)
        noisy = make_case("smooth", seed, noise="binomial", measured_fraction=0.6, training_noise=tau)
        same = [c for c in plain.table.columns if c not in ("accuracy", "throughput")]
        assert plain.table[same].equals(noisy.table[same])
        assert not np.allclose(plain.table["accuracy"], noisy.table["accuracy"])
        for case in (plain, noisy):
            results = results_from_frame(case.table)
            X, y, known, _ = results.accuracy_data()
            model = MonotoneGPModel(residual_gp=False).fit(X, y, noise_variance=known)
            excess[case.training_noise].append(model.noise_)
    assert np.sqrt(np.mean(excess[0.0])) < 0.5 * tau  # the binomial part is known, not excess
    assert 0.5 * tau < np.sqrt(np.mean(excess[tau])) < 1.5 * tau


def test_noise_scale_shrinks_only_the_accuracy_noise():
    for noise in ("binomial", "gaussian"):
        full = make_case("knee", 5, noise=noise)
        half = make_case("knee", 5, noise=noise, noise_scale=0.5)
        assert full.surface == half.surface and full.grid.equals(half.grid)
        assert full.table[["mux", "sparsity"]].equals(half.table[["mux", "sparsity"]])
        truth = full.surface.accuracy(full.table["mux"], full.table["sparsity"])
        if noise == "binomial":
            assert half.table["eval_examples"].iloc[0] == round(full.table["eval_examples"].iloc[0] * 4)
        else:
            error = [np.sqrt(np.mean((case.table["accuracy"] - truth) ** 2)) for case in (full, half)]
            assert error[1] < 0.75 * error[0]


def test_a_replay_names_the_versions_its_numbers_depend_on():
    from importlib.metadata import version

    from autoprumux.meta.replay import PACKAGES, environment

    line = environment()
    assert line.startswith("python 3.")
    assert all(f"{package} {version(package)}" in line for package in PACKAGES), line
