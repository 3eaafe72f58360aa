"""autoprumux: data multiplexing x structured pruning for BERT classifiers, and which (N, s) to deploy.

The package root stays import-light: `autoprumux.meta` and `autoprumux.plots` must load without
torch, so nothing heavy is imported here.
"""

from autoprumux.errors import (
    AutoprumuxError,
    BudgetError,
    DataError,
    ModelError,
    SpecError,
    StorageError,
    TableError,
)

__version__ = "0.1.0"

__all__ = [
    "AutoprumuxError",
    "BudgetError",
    "DataError",
    "ModelError",
    "SpecError",
    "StorageError",
    "TableError",
    "__version__",
]
