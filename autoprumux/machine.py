"""What this machine offers and how busy it is (torch-free, so cheap commands can ask).

A training or benchmark process that shares its cores with other busy processes slows down far
more than its fair share when its OpenMP threads spin-wait for each other while one of them is
descheduled; `oversubscribed()` says when that is likely, so callers can warn and use fewer threads.
"""

from __future__ import annotations

import os


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


def oversubscribed(own_threads: int = 0) -> str | None:
    """A one-line reason when other processes already keep every core busy, else None.

    `own_threads` are runnable threads of this process already counted in the load.
    """
    load, cores = load_average(), cpu_cores()
    if load is None or load - own_threads <= cores - 0.5:
        return None
    return f"the machine is busy (load {load:.1f} on {cores} cores)"
