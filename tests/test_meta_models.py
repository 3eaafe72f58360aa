"""Performance models: the scikit-learn contract, and recovery of known surfaces from generated
tables (held-out points, oracle agreement on a dense noiseless grid, violations under noise)."""

from __future__ import annotations

import pickle
import sys
from statistics import NormalDist

import numpy as np
import pytest
from scipy.special import stdtrit
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.utils.estimator_checks import check_estimator

from autoprumux.meta import (
    GaussianProcessModel,
    PolynomialRidgeModel,
    SeparableModel,
    SyntheticSurface,
    evaluate,
    fit_performance_models,
    recommend,
    results_from_frame,
    synthetic_table,
)
from autoprumux.meta.calibration import std_scale
from autoprumux.meta.compiled import CompiledTarget, compile_target, load_compiled
from autoprumux.meta.optimizer import candidate_configurations, few_dof_widening, score_candidates
from autoprumux.meta.render import format_fit
from autoprumux.meta.selection import TargetModel, models_path, save_models
from autoprumux.meta.structured import AdditiveThroughputModel, MonotoneGPModel, noise_degrees_of_freedom

ESTIMATORS = [
    SeparableModel(),
    SeparableModel(interaction=True),
    PolynomialRidgeModel(),
    GaussianProcessModel(),
    MonotoneGPModel(),
    MonotoneGPModel(residual_gp=False),
    MonotoneGPModel(monotone=False),
    AdditiveThroughputModel(),
]
SURFACE = SyntheticSurface()
GRID_MUX = (1, 2, 5, 10)
GRID_SPARSITY = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)

# These generic checks feed X with 3-10 columns or values outside N >= 1, 0 <= s < 1; the models
# reject such X by design (ValueError naming the accepted form). The contract on valid X is
# tested below instead.
OUT_OF_DOMAIN = (
    "check_dict_unchanged check_dont_overwrite_parameters check_dtype_object check_estimators_dtypes "
    "check_estimators_fit_returns_self check_estimators_nan_inf check_estimators_overwrite_params "
    "check_estimators_pickle check_f_contiguous_array_estimator check_fit2d_1feature check_fit2d_1sample "
    "check_fit2d_predict1d check_fit_check_is_fitted check_fit_idempotent check_fit_score_takes_y "
    "check_methods_sample_order_invariance check_methods_subset_invariance check_n_features_in "
    "check_n_features_in_after_fitting check_pipeline_consistency check_positive_only_tag_during_fit "
    "check_readonly_memmap_input check_regressor_data_not_an_array check_regressors_int "
    "check_regressors_no_decision_function check_regressors_train check_supervised_y_2d"
).split()


@pytest.fixture(autouse=True)
def _one_thread():
    if "torch" in sys.modules:  # meta never imports torch; cap it only if another module did
        sys.modules["torch"].set_num_threads(1)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_sklearn_estimator_checks(estimator):
    # scikit-learn's common checks (what `parametrize_with_checks` runs), in one test per model;
    # any failure outside OUT_OF_DOMAIN raises
    expected = {name: "needs X = [mux >= 1, sparsity in [0, 1)]" for name in OUT_OF_DOMAIN}
    outcomes = check_estimator(estimator, expected_failed_checks=expected, on_skip=None)
    passed = {o["check_name"] for o in outcomes if o["status"] == "passed"}
    assert {
        "check_estimator_cloneable",
        "check_get_params_invariance",
        "check_set_params",
        "check_no_attributes_set_in_init",
        "check_estimators_unfitted",
    } <= passed


def _xy(noise=0.0, seed=0):
    table = synthetic_table(mux=GRID_MUX, sparsity=GRID_SPARSITY, accuracy_noise=noise, seed=seed)
    return table[["mux", "sparsity"]].to_numpy(float), table["accuracy"].to_numpy(), table


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_contract_on_valid_inputs(estimator):
    X, y, table = _xy(noise=0.002)
    groups = table["mux"].to_numpy()
    scores = cross_val_score(
        clone(estimator), X, y, groups=groups, cv=GroupKFold(4), scoring="neg_mean_absolute_error"
    )
    assert np.all(np.isfinite(scores)) and -scores.mean() < 0.02
    model = clone(estimator).fit(X, y)
    mean, std = model.predict(X[:5], return_std=True)
    assert mean.shape == std.shape == (5,) and np.all(std >= 0)
    assert np.allclose(pickle.loads(pickle.dumps(model)).predict(X), model.predict(X))
    order = np.random.default_rng(0).permutation(len(X))
    assert np.allclose(model.predict(X[order]), model.predict(X)[order])
    assert np.allclose(clone(estimator).fit(X, y).predict(X), model.predict(X))  # idempotent
    assert model.n_features_in_ == 2
    with pytest.raises(ValueError, match=r"mux >= 1 and sparsity in \[0, 1\)"):
        model.predict([[0.5, 0.2]])
    with pytest.raises(ValueError, match="2 columns"):
        clone(estimator).fit(np.c_[X, X[:, :1]], y)


@pytest.mark.parametrize("noise", [0.0, 0.004])
def test_array_form_predicts_like_scikit_learn(noise):
    table = synthetic_table(
        mux=GRID_MUX, sparsity=GRID_SPARSITY, accuracy_noise=noise, throughput_noise=5 * noise
    )
    results = results_from_frame(table)
    X = np.array([[n, s] for n in (1, 1.5, 3, 8, 12) for s in (0.0, 0.3, 0.65, 0.85, 0.93)])
    targets = {"accuracy": table["accuracy"].to_numpy(), "throughput": np.log(table["throughput"].to_numpy())}
    for target, y in targets.items():
        for estimator in [
            *ESTIMATORS,
            PolynomialRidgeModel(degree=3),
            GaussianProcessModel(nu=1.5, linear_mean=False),
        ]:
            fitted = TargetModel(target, "m", clone(estimator).fit(results.features, y), "native", 0.001)
            kind, arrays = compile_target(fitted)
            compiled = CompiledTarget(
                kind, {k: np.asarray(v, dtype=float) for k, v in arrays.items()}, "native", 0.001
            )
            for ours, theirs in zip(compiled.predict(X), fitted.predict(X), strict=True):
                np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9)


HELD_OUT = np.array([[n, s] for n in (3, 4, 8) for s in (0.25, 0.55, 0.65, 0.75, 0.85)])


@pytest.mark.parametrize(("noise", "acc_tol", "thr_tol"), [(0.0, 0.0005, 0.005), (0.003, 0.005, 0.03)])
def test_models_recover_the_surfaces_on_held_out_points(noise, acc_tol, thr_tol):
    table = synthetic_table(
        mux=GRID_MUX, sparsity=GRID_SPARSITY, accuracy_noise=noise, throughput_noise=10 * noise
    )
    models = fit_performance_models(results_from_frame(table))
    pred = models.predict(HELD_OUT)
    acc_error = np.abs(pred["accuracy"] - SURFACE.accuracy(HELD_OUT[:, 0], HELD_OUT[:, 1]))
    thr_error = np.abs(
        np.exp(pred["log_throughput"]) / SURFACE.throughput(HELD_OUT[:, 0], HELD_OUT[:, 1]) - 1
    )
    assert acc_error.max() < acc_tol, acc_error.max()
    assert thr_error.max() < thr_tol, thr_error.max()
    assert set(models.cv["model"]) == {"monotone-gp", "monotone", "free-gp", "additive", "separable", "gp"}
    assert models.cv["chosen"].sum() == 2


def test_recommendation_matches_the_oracle_on_a_dense_noiseless_grid():
    mux, sparsity = (1, 2, 3, 4, 5, 6, 8, 10), tuple(np.round(np.arange(0.0, 0.91, 0.1), 2))
    results = results_from_frame(synthetic_table(mux=mux, sparsity=sparsity))
    models = fit_performance_models(results)
    n_grid, s_grid = (a.ravel() for a in np.meshgrid(mux, sparsity, indexing="ij"))
    true_acc, true_thr = SURFACE.accuracy(n_grid, s_grid), SURFACE.throughput(n_grid, s_grid)
    budgets = np.linspace(0.005, 0.10, 20)
    matches = 0
    for budget in budgets:
        oracle = np.argmax(np.where(true_acc >= SURFACE.accuracy(1, 0) - budget, true_thr, -np.inf))
        pick = recommend(
            results, budget, models=models, mux_choices=mux, sparsity_choices=sparsity
        ).recommendation
        matches += (pick.mux, pick.sparsity) == (n_grid[oracle], s_grid[oracle])
    assert matches >= 0.9 * len(budgets), matches


def test_violations_under_noise_stay_rare_at_the_default_confidence():
    # violation: the pick's true accuracy is under the floor the recommender reported; the 20
    # budgets of one table share its noise, so the rate is taken over ten tables
    budgets = np.linspace(0.005, 0.10, 20)
    decisions = violations = 0
    for seed in range(10):
        table = synthetic_table(
            mux=GRID_MUX, sparsity=GRID_SPARSITY, accuracy_noise=0.004, throughput_noise=0.03, seed=seed
        )
        results = results_from_frame(table)
        models = fit_performance_models(results)
        for budget in budgets:
            rec = recommend(results, budget, models=models)
            pick = rec.recommendation
            violations += SURFACE.accuracy(pick.mux, pick.sparsity) < rec.accuracy_floor
            decisions += 1
    assert violations <= 0.05 * decisions, (violations, decisions)


def test_evaluate_on_noiseless_table_has_small_regret_and_no_violations():
    results = results_from_frame(synthetic_table(mux=GRID_MUX, sparsity=GRID_SPARSITY), source="grid")
    ev = evaluate(results, budgets=("1%", "3%", "5%"), holdout=3, n_splits=3, seed=1)
    assert len(ev.splits) == 9 and list(ev.summary["budget"]) == [0.01, 0.03, 0.05]
    assert ev.violation_rate == 0.0
    assert 0.0 <= ev.regret < 0.1
    assert ev.splits["pick_hidden"].dtype == bool
    assert set(ev.to_dict()) >= {"regret", "violation_rate", "per_budget"}


def test_calibration_leaves_a_calibrated_std_alone_and_widens_one_too_small():
    rng = np.random.default_rng(0)
    noise = np.full(25, 0.5**2)
    honest, too_small = [], []
    for _ in range(200):
        residual = rng.normal(0.0, np.sqrt(1.0 + 0.25), 25)  # model error 1, measurement noise 0.5
        honest.append(std_scale(residual, np.ones(25), noise))
        too_small.append(std_scale(residual, np.full(25, 0.4), noise))
    assert np.mean(np.isclose(honest, 1.0)) >= 0.75, np.mean(np.isclose(honest, 1.0))
    assert np.mean(honest) < 1.1
    assert 1.6 <= np.median(too_small) <= 2.6, np.median(too_small)


@pytest.mark.parametrize("estimator", [MonotoneGPModel(), MonotoneGPModel(monotone=False), GaussianProcessModel()],
                         ids=["monotone-gp", "free-gp", "gp"])  # fmt: skip
def test_conditioning_on_a_fantasy_keeps_hyperparameters_and_predictions(estimator):
    # `suggest` pretends each pick was measured at its prediction ("kriging believer"): the model
    # must condition on that row, not re-estimate its kernel and trend (the demo's second
    # suggestion once jumped by 5 points of accuracy at a point far from the first)
    X, y, _ = _xy(noise=0.004, seed=3)
    keep = np.random.default_rng(0).permutation(len(X))[:14]
    model = TargetModel("accuracy", "m", clone(estimator).fit(X[keep], y[keep]), "native", 0.01)
    fantasy = X[np.setdiff1d(np.arange(len(X)), keep)[:1]]
    mean, std = model.predict(X)
    conditioned = model.condition(np.r_[X[keep], fantasy], np.r_[y[keep], model.predict(fantasy)[0]])
    new_mean, new_std = conditioned.predict(X)
    before, after = model.estimator, conditioned.estimator
    if isinstance(before, MonotoneGPModel):
        assert np.allclose(after.trend_powers_, before.trend_powers_)
        assert after.gp_.kernel_.theta == pytest.approx(before.gp_.kernel_.theta)
        assert conditioned.dof == model.dof < np.inf  # a fantasy is no evidence on the noise
    else:
        assert after.gp_.kernel_.theta == pytest.approx(before.gp_.kernel_.theta)
    assert np.max(np.abs(new_mean - mean) / std) < 0.1
    assert np.all(new_std <= std * (1 + 1e-6))
    at = int(np.flatnonzero((X == fantasy).all(axis=1))[0])
    assert new_std[at] < 0.9 * std[at]


def test_noise_degrees_of_freedom_follow_satterthwaite():
    assert noise_degrees_of_freedom(5, 0.0, 1e-4) == 5  # all of the noise was fitted
    assert noise_degrees_of_freedom(5, 1e-4, 1e-4) == pytest.approx(20)  # half of it known exactly
    assert noise_degrees_of_freedom(5, 1e-4, 0.0) == np.inf  # nothing fitted beyond the known part
    assert noise_degrees_of_freedom(5, 0.0, 0.0) == 5
    # a monotone GP on 9 Gaussian rows: the rows less the trend's fitted parameters
    table = synthetic_table(mux=(1, 2, 4), sparsity=(0.0, 0.5, 0.8), accuracy_noise=0.003, seed=1)
    X, y = table[["mux", "sparsity"]].to_numpy(float), table["accuracy"].to_numpy(float)
    model = MonotoneGPModel().fit(X, y)
    fitted = 6 + (model.trend_powers_[2] > 0)  # intercept, 3 slopes, 2 powers, a knee when kept
    assert model.noise_dof_ == len(y) - fitted
    # told a binomial variance much larger than what is fitted beyond it, the noise is nearly known
    assert MonotoneGPModel().fit(X, y, np.full(len(y), 0.01**2)).noise_dof_ > 10 * (len(y) - fitted)


def test_few_dof_widening_reaches_students_t_bound_unless_calibration_did():
    class Target:
        def __init__(self, dof, std_scale=1.0):
            self.dof, self.std_scale = dof, std_scale

    z95 = NormalDist().inv_cdf(0.95)
    assert few_dof_widening(Target(1), 0.95) == pytest.approx(6.313752 / z95, rel=1e-6)
    assert few_dof_widening(Target(13), 0.90) == pytest.approx(1.350171 / NormalDist().inv_cdf(0.9), rel=1e-6)
    assert few_dof_widening(Target(1), 0.95) > few_dof_widening(Target(3), 0.95) > few_dof_widening(Target(30), 0.95) > 1
    assert few_dof_widening(Target(np.inf), 0.95) == 1.0
    assert few_dof_widening(Target(13, std_scale=1.5), 0.95) == 1.0  # the calibration already widened more
    assert few_dof_widening(Target(2, std_scale=1.5), 0.95) == pytest.approx(2.919986 / (1.5 * z95), rel=1e-6)
    assert few_dof_widening(Target(2), 0.5) == 1.0  # the bound is the mean either way


def test_a_small_gaussian_table_bounds_accuracy_by_students_t(tmp_path):
    # 8 configurations measured with Gaussian noise and no eval_examples: the trend leaves the
    # noise one or two degrees of freedom, and recommend's std is widened to t's quantile; the
    # array form that recommend loads keeps the degrees of freedom
    table = synthetic_table(mux=(1, 2, 4), sparsity=(0.0, 0.5, 0.8), accuracy_noise=0.003, throughput_noise=0.02, seed=2)
    table = table[~((table["mux"] == 4) & (table["sparsity"] == 0.5))]
    results = results_from_frame(table, source=str(tmp_path / "trials.csv"))
    models = fit_performance_models(results)
    assert 1 <= models.accuracy.dof <= 2, models.accuracy.dof
    candidates = candidate_configurations(results, [1, 2, 4], [0.0, 0.5, 0.8])
    floor = results.baseline_accuracy - 0.03
    scored = score_candidates(models, candidates, floor, 0.95, results)
    plain = models.predict(candidates[["mux", "feature_sparsity"]].to_numpy(float))["accuracy_std"]
    widening = stdtrit(models.accuracy.dof, 0.95) / (NormalDist().inv_cdf(0.95) * models.accuracy.std_scale)
    assert widening > 1.5  # this table's held-out errors did not widen the std (std_scale 1)
    np.testing.assert_allclose(scored["accuracy_std"], plain * widening, rtol=1e-9)
    warned = [w for w in recommend(results, "3%", models=models).warnings if "degrees of freedom" in w]
    assert len(warned) == 1 and f"{widening:.1f}x as wide" in warned[0]
    larger = results_from_frame(synthetic_table(accuracy_noise=0.003, throughput_noise=0.02, seed=2))
    assert not any("degrees of freedom" in w for w in recommend(larger, "3%").warnings)  # 24 rows: d >= 17
    assert models.summary()["accuracy"]["dof"] == models.accuracy.dof
    assert f"Student's t with {models.accuracy.dof:.1f} degrees of freedom" in format_fit(models)
    save_models(models, models_path(results))
    compiled = load_compiled(results)
    assert compiled.accuracy.dof == models.accuracy.dof
    np.testing.assert_allclose(score_candidates(compiled, candidates, floor, 0.95, results)["accuracy_std"],
                               scored["accuracy_std"], rtol=1e-7)  # fmt: skip


def test_coverage_checks_the_t_bound_recommend_uses():
    # evaluate's coverage (and the benchmarks') judge the bound recommend uses: a hidden
    # configuration measured between the normal bound and Student's t's is covered at 90% and 80%
    from autoprumux.meta.evaluation import COVERAGE_LEVELS, _covered

    table = synthetic_table(mux=(1, 2, 4), sparsity=(0.0, 0.5, 0.8), accuracy_noise=0.003, throughput_noise=0.02, seed=2)
    table = table[~((table["mux"] == 4) & (table["sparsity"] == 0.5))]
    results = results_from_frame(table)
    models = fit_performance_models(results)
    hidden = results.configurations.copy()
    pred = models.predict(hidden[["mux", "feature_sparsity"]].to_numpy(float))
    noise = np.nan_to_num(hidden["accuracy_se"].to_numpy(float) ** 2) + models.accuracy.estimator.noise_
    spread = np.sqrt(pred["accuracy_std"] ** 2 + noise)
    for i, level in enumerate(COVERAGE_LEVELS):
        if level <= 0.5:
            continue  # the bound is the mean either way
        z, widening = NormalDist().inv_cdf(level), few_dof_widening(models.accuracy, level)
        assert widening > 1.2, (level, widening)  # d = 2: t's 90% quantile is 1.47x the normal's
        between = pred["accuracy"] - z * spread * (1 + widening) / 2  # under the normal bound
        assert _covered(models, hidden.assign(accuracy=between))[:, i].all(), level
