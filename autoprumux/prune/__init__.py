"""CoFi structured pruning: L0 gates, the sparsity count, the Lagrangian, distillation, compaction.

    gated = attach_gates(model, droprate_init=0.5)            # hooks on transformers' BERT modules
    ...train with gated.gates, a SparsityConstraint and distillation losses...
    gated.detach()
    small = compact_model(model, gated.gates)                  # a smaller dense model, same logits
    measured_sparsity(small)                                   # the one sparsity count, on its shapes

MECHANICS.md section 2 has the formulas.
"""

from autoprumux.prune.compact import PrunedStructure, compact_model
from autoprumux.prune.distill import LayerDistiller, prediction_distillation_loss, teacher_layer_indices
from autoprumux.prune.gated import GatedLayerNorm, GatedModel, attach_gates
from autoprumux.prune.gates import GATE_KINDS, GateMasks, L0Gates
from autoprumux.prune.lagrangian import LagrangianPenalty, SparsityConstraint, target_sparsity_at
from autoprumux.prune.size import (
    expected_size,
    expected_sparsity,
    full_prunable_parameter_count,
    mask_size,
    mask_sparsity,
    measured_prunable_parameters,
    measured_sparsity,
    prunable_parameter_count,
    surviving_structure,
)

__all__ = [
    "GATE_KINDS",
    "GateMasks",
    "GatedLayerNorm",
    "GatedModel",
    "L0Gates",
    "LagrangianPenalty",
    "LayerDistiller",
    "PrunedStructure",
    "SparsityConstraint",
    "attach_gates",
    "compact_model",
    "expected_size",
    "expected_sparsity",
    "full_prunable_parameter_count",
    "mask_size",
    "mask_sparsity",
    "measured_prunable_parameters",
    "measured_sparsity",
    "prediction_distillation_loss",
    "prunable_parameter_count",
    "surviving_structure",
    "target_sparsity_at",
    "teacher_layer_indices",
]
