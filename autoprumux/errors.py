"""The exception hierarchy for user mistakes.

Every error a user can cause (bad spec, bad table, bad budget, unknown task, missing file,
unreachable storage) is an `AutoprumuxError`. `autoprumux.cli.main` turns them into one line
`autoprumux: error: ...` and exit status 2. Anything else is a bug and keeps its traceback.
Messages name the bad value and what is accepted.
"""


class AutoprumuxError(Exception):
    """A user mistake: printed as one line by the CLI, exit status 2."""


class SpecError(AutoprumuxError):
    """A sweep spec (TOML) or a training setting is malformed."""


class TableError(AutoprumuxError):
    """A results table is missing, empty, lacks columns or has invalid values."""


class BudgetError(AutoprumuxError):
    """An accuracy-loss budget is malformed or out of range."""


class DataError(AutoprumuxError):
    """A task, data file or column cannot be found or read."""


class ModelError(AutoprumuxError):
    """A model preset, id, path or checkpoint cannot be resolved or loaded."""


class StorageError(AutoprumuxError):
    """An Optuna storage URL is malformed or unreachable."""


class SweepNotStarted(StorageError):
    """The storage holds no such sweep yet (no database file, no Optuna tables, or no study)."""
