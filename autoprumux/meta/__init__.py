"""Auto-PruMUX: performance models of a results table and the (N, s) recommender. No torch.

Works on any results table with columns mux, sparsity, accuracy (fraction) and throughput
(examples/s)::

    from autoprumux.meta import load_results, load_or_fit_models, recommend
    results = load_results("results/demo/trials.csv")
    models, _ = load_or_fit_models(results)          # cached beside the table
    print(recommend(results, "3%", models=models).to_dict())

Names load lazily, so `from autoprumux.meta import parse_budget` does not import scikit-learn.
`surfaces.suite()` generates held-out tables with known truth (the recommender benchmarks and
`tests/test_meta_surfaces.py` use them).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "autoprumux.meta.budget": ("parse_budget", "accuracy_floor", "format_budget"),
    "autoprumux.meta.results": ("Results", "load_results", "results_from_frame", "default_table_path"),
    "autoprumux.meta.models": ("SeparableModel", "PolynomialRidgeModel", "GaussianProcessModel"),
    "autoprumux.meta.structured": ("MonotoneGPModel", "AdditiveThroughputModel"),
    "autoprumux.meta.surfaces": ("Surface", "make_case", "suite"),
    "autoprumux.meta.selection": (
        "FittedModels",
        "TargetModel",
        "default_candidates",
        "fit_performance_models",
        "load_or_fit_models",
        "load_saved_models",
        "models_path",
        "save_models",
    ),
    "autoprumux.meta.compiled": ("CompiledModels", "load_compiled"),
    "autoprumux.meta.optimizer": (
        "ConfigEstimate",
        "Recommendation",
        "candidate_configurations",
        "load_models_for_recommend",
        "recommend",
    ),
    "autoprumux.meta.suggestion": ("Suggestion", "Suggestions", "suggest"),
    "autoprumux.meta.evaluation": ("Evaluation", "evaluate"),
    "autoprumux.meta.render": (
        "format_fit",
        "format_recommendation",
        "format_suggestions",
        "format_evaluation",
    ),
    "autoprumux.meta.synthetic": ("SyntheticSurface", "synthetic_table"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'autoprumux.meta' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
