"""Where this process's training stands: stage, batches done of total, and the time left.

The training loop updates it after every batch; a sweep worker's heartbeat thread reads it and
writes it to the running trial (user attribute `progress`), so `autoprumux status` can show every
running trial's stage and progress from any machine. Torch-free; one board per process.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_board: dict = {}


def update(stage: str, done: int, total: int) -> None:
    """Record that `stage` has done `done` of `total` batches."""
    now = time.monotonic()
    with _lock:
        if _board.get("stage") != stage or done < _board.get("done", 0):
            _board.clear()
            _board.update(stage=stage, started=now)
        _board.update(done=done, total=total, at=now)


def reset() -> None:
    """Forget the previous trial's progress."""
    with _lock:
        _board.clear()


def snapshot() -> dict | None:
    """{"stage", "done", "total", "eta_s"} of the latest update (eta None until a rate is known), or None."""
    with _lock:
        if "done" not in _board:
            return None
        board = dict(_board)
    elapsed = board["at"] - board["started"]
    rate = board["done"] / elapsed if elapsed > 0 and board["done"] > 0 else None
    eta = (board["total"] - board["done"]) / rate if rate else None
    return {"stage": board["stage"], "done": board["done"], "total": board["total"],
            "eta_s": None if eta is None else round(eta, 1)}


def describe(snap: dict | None) -> str:
    """One phrase: 'finetune N=2: 1,200/3,000 batches, about 2 min left'."""
    if not snap:
        return "starting"
    text = f"{snap['stage']}: {snap['done']:,}/{snap['total']:,} batches"
    eta = snap.get("eta_s")
    if eta is not None:
        text += f", about {eta / 60:.0f} min left" if eta >= 90 else f", about {eta:.0f} s left"
    return text
