"""The stage store: each stage output is built once, across processes, machines and resumed runs.

A stage's output lives in `<root>/<stage key>/`, where the key hashes everything that determines
it (`autoprumux.train.plan.stage_chain`). `StageStore.run_once(key, build)` returns that folder,
building it first if it does not exist. Who builds is decided by a lock file created with
`O_CREAT | O_EXCL` (atomic also on NFS v3+), holding the owner's identity and build folder; the
owner touches it every `heartbeat_s` seconds. A lock counts as stale when its mtime is older than
`stale_after_s`, or when its owner is a dead process *of this process table*: same host name,
same boot and same pid namespace. Two containers can share a host name (`--network host`) while
their pids live in different namespaces, so a pid alone says nothing about a lock from the other.
Stale locks are broken (and the dead owner's half-built folder removed). Builds go to a private folder that is renamed into place
atomically, so a reader never sees a half-written stage, and if two builders ever race (a lock
broken while its owner was only slow) the first rename wins and the other output is discarded.

Every build and reuse is appended to `<root>/stages.jsonl`; `stage_counts(root)` sums it up.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

LOG_NAME = "stages.jsonl"


def _read_or_empty(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def process_identity() -> dict:
    """Who holds a lock: host name, boot id and pid namespace (what makes a pid meaningful), pid."""
    try:
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_namespace = ""
    return {
        "host": socket.gethostname(),
        "boot": _read_or_empty("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": pid_namespace,
        "pid": os.getpid(),
    }


def _same_process_table(info: dict, mine: dict) -> bool:
    return all(info.get(key) == mine[key] for key in ("host", "boot", "pid_namespace"))


def _process_is_dead(pid: int) -> bool:
    """True when no live process has this pid on this host (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


class _LockFile:
    """A cross-process, cross-host lock: a file created exclusively, kept fresh by a heartbeat."""

    def __init__(self, path: Path, *, heartbeat_s: float, stale_after_s: float, payload: dict) -> None:
        self.path = path
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.payload = {**payload, **process_identity(), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(self.payload, handle)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat-{self.path.name}", daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except FileNotFoundError:  # our lock was broken as stale; the publish step stays safe
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._read(self.path).get("token") == self.payload["token"]:
            self.path.unlink(missing_ok=True)

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def _is_stale(self, info: dict, mtime: float) -> bool:
        if time.time() - mtime > self.stale_after_s:
            return True
        pid = info.get("pid")
        return _same_process_table(info, self.payload) and isinstance(pid, int) and _process_is_dead(pid)

    def break_if_stale(self) -> dict | None:
        """Remove the current lock if its owner is gone; returns the broken lock's payload."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        info = self._read(self.path)
        if not self._is_stale(info, stat.st_mtime):
            return None
        grave = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return None
        moved = os.stat(grave)
        if (moved.st_ino, moved.st_dev) != (stat.st_ino, stat.st_dev):
            # Someone replaced the stale lock with a live one between our stat and rename: put it back.
            try:
                os.link(grave, self.path)
            except FileExistsError:
                pass
            os.unlink(grave)
            return None
        os.unlink(grave)
        return info


@dataclass
class StageStore:
    """Stage outputs under `root`, each built at most once; see the module docstring.

    `heartbeat_s` is how often a builder refreshes its lock, `stale_after_s` how old a lock may
    get before others take over, `poll_s` how often waiters look again (all seconds).
    `built` and `reused` count this process's builds and cache hits.
    """

    root: Path
    heartbeat_s: float = 10.0
    stale_after_s: float = 60.0
    poll_s: float = 0.5
    built: int = field(default=0, init=False)
    reused: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def path(self, key: str) -> Path:
        """Where the finished output of stage `key` lives (whether or not it exists yet)."""
        return self.root / key

    def run_once(self, key: str, build: Callable[[Path], None]) -> Path:
        """The finished folder of stage `key`, calling `build(folder)` first if no one has yet.

        `build` receives a folder path that does not exist yet and must create it with the
        stage's output. Concurrent callers with the same key wait for the one that builds.
        """
        final = self.path(key)
        scratch = self.root / ".building" / f"{key}.{uuid.uuid4().hex[:12]}"
        lock = _LockFile(
            self.root / ".locks" / f"{key}.lock",
            heartbeat_s=self.heartbeat_s,
            stale_after_s=self.stale_after_s,
            payload={"key": key, "scratch": str(scratch)},
        )
        waited_since = time.monotonic()
        while not final.is_dir():
            if lock.try_acquire():
                try:
                    if not final.is_dir():  # the previous holder may have just published it
                        return self._build(key, build, final, scratch)
                finally:
                    lock.release()
                break
            broken = lock.break_if_stale()
            if broken is not None:
                if broken.get("scratch"):
                    shutil.rmtree(broken["scratch"], ignore_errors=True)
                self._log("broke-stale-lock", key, owner=f"{broken.get('host')}:{broken.get('pid')}")
                continue
            time.sleep(self.poll_s)
        self.reused += 1
        self._log("reused", key, waited_s=round(time.monotonic() - waited_since, 3))
        return final

    def _build(self, key: str, build: Callable[[Path], None], final: Path, scratch: Path) -> Path:
        output = scratch / "stage"
        scratch.mkdir(parents=True)
        start = time.monotonic()
        try:
            build(output)
            if not output.is_dir():
                raise RuntimeError(f"building stage {key} wrote nothing to {output}")
            try:
                os.rename(output, final)
            except OSError:
                if not final.is_dir():
                    raise
                # Another builder published first (our lock was broken while we were slow): keep theirs.
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.built += 1
        self._log("built", key, seconds=round(time.monotonic() - start, 3))
        return final

    def _log(self, event: str, key: str, **extra) -> None:
        record = {"event": event, "key": key, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOG_NAME, "a") as handle:
            handle.write(json.dumps({**record, **extra}) + "\n")


@dataclass(frozen=True)
class StageCounts:
    """Stage builds and reuses recorded in a store's log; `builds_per_key` shows any double build."""

    built: int
    reused: int
    builds_per_key: dict[str, int]


def stage_counts(root: str | os.PathLike) -> StageCounts:
    """Sum up `<root>/stages.jsonl` (zeros when nothing was logged yet)."""
    log = Path(root) / LOG_NAME
    events: Counter = Counter()
    per_key: Counter = Counter()
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            events[record.get("event")] += 1
            if record.get("event") == "built":
                per_key[record.get("key")] += 1
    return StageCounts(built=events["built"], reused=events["reused"], builds_per_key=dict(per_key))
