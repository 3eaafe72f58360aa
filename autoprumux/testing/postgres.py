"""A throw-away PostgreSQL server for tests and benchmarks: `initdb`, start, restart, stop.

It runs the server binaries of the machine (Debian's `postgresql` package, which `make test`
installs when they are missing) on a free TCP port of 127.0.0.1, with its data in a fresh folder
that `stop()` deletes. PostgreSQL refuses to run as root, so under root the server runs as the
`postgres` user that the Debian package creates::

    with TemporaryPostgres() as server:
        url = server.url          # postgresql+psycopg://autoprumux@127.0.0.1:PORT/autoprumux
        server.restart()          # a real fast restart, as `pg_ctl -m fast restart`

Nothing here is a mock: sweeps in the test suite run against this server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "autoprumux"
DATABASE = "autoprumux"


class PostgresNotFound(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def server_binaries() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `postgres` (the newest installed version)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found; `make test` installs Debian's "
        "postgresql package, or install it yourself (apt-get install postgresql)"
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TemporaryPostgres:
    """A PostgreSQL server of its own, on 127.0.0.1:`port`, trusting local connections.

    `settings` are extra server settings (`-c name=value`), e.g. {"max_connections": "300"}.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, settings: dict[str, str] | None = None) -> None:
        self.bin = server_binaries()
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="autoprumux-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.settings = {"max_connections": "200", "fsync": "off", **(settings or {})}
        self._runas = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the server's database (psycopg 3 driver)."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        def drop_root() -> None:
            if self._runas is not None:
                os.setgid(self._runas.pw_gid)
                os.setuid(self._runas.pw_uid)

        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=check,
            capture_output=True,
            text=True,
            preexec_fn=drop_root,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
        )

    def start(self) -> TemporaryPostgres:
        """Create the cluster (first call) and start the server; returns self."""
        if not self.data.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            if self._runas is not None:
                os.chown(self.root, self._runas.pw_uid, self._runas.pw_gid)
            self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
            self._pg_ctl("start")
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        else:
            self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = " ".join([f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.root}"]
                           + [f"-c {k}={v}" for k, v in self.settings.items()])
        result = self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60",
                           "-l", str(self.root / "server.log"), "-o", options, *extra, check=False)
        if result.returncode != 0:
            log = (self.root / "server.log").read_text()[-2000:] if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl {action} failed: {result.stderr.strip()}\n{log}")

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server fast (open connections are cut), stay down `down_s` seconds, start it again."""
        self._pg_ctl("stop", "-m", "fast")
        time.sleep(down_s)
        self._pg_ctl("start")

    def stop(self) -> None:
        """Stop the server and delete its data (a no-op when it never started)."""
        if self.data.exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", check=False)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_database(self, prefix: str = "t") -> str:
        """Create a fresh, empty database on the server; returns its URL."""
        import uuid

        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def _dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={DATABASE}"

    def connection_count(self) -> int:
        """Client connections open to the server now (pg_stat_activity client backends)."""
        import psycopg

        with psycopg.connect(self._dsn()) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).fetchone()
        return int(count) - 1  # this query's own connection

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
