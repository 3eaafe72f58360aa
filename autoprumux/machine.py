"""What this machine offers and how busy it is (torch-free, so cheap commands can ask).

A training or benchmark process that shares its cores with other busy processes slows down far
more than its fair share when its OpenMP threads spin-wait for each other while one of them is
descheduled; `oversubscribed()` says when that is likely, so callers can warn and use fewer threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def cpu_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes), or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def oversubscribed(threads: int | None = None) -> str | None:
    """A one-line reason when other processes plus this one's `threads` would need more than the cores.

    Call it before starting the threads: the load average then counts only the others. `threads`
    defaults to `OMP_NUM_THREADS`, else every core (torch's default).
    """
    load, cores = load_average(), cpu_cores()
    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or cores
    if load is None or load + threads <= cores + 0.5:
        return None
    return f"the machine is busy (load {load:.1f} from other processes, {threads} thread(s) to add, {cores} cores)"


def yield_threads_if_busy() -> str | None:
    """On a busy machine, make OpenMP threads sleep instead of spinning while they wait; say why.

    Measured on the demo's training step with one competing busy process on 2 cores
    (benchmarks/oversubscription.py): 2 spinning threads ran 3.8x slower than on a quiet machine,
    2 passive ones 1.5x, one thread 1.0x. Passive waiting costs about 15% on a quiet machine, so
    it is only chosen when the machine is busy at start, and never over the user's own
    `OMP_WAIT_POLICY`. It must run before torch starts its thread pool. Returns the reason, or None.
    """
    reason = oversubscribed()
    if reason is None or "OMP_WAIT_POLICY" in os.environ:
        return reason
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return f"{reason}; OpenMP threads will sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE)"


def package_versions(packages: Sequence[str]) -> str:
    """One line naming Python and the installed version of each of `packages` (without importing
    them), for an output or a README that must say what produced its numbers."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def named(package):
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            return f"{package} not installed"

    return ", ".join([f"python {platform.python_version()}", *map(named, packages)])
