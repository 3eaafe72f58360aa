"""Opening a sweep's Optuna storage: heartbeats, retries, and SQLite transactions that really lock.

Any SQLAlchemy URL Optuna's `RDBStorage` accepts works: `sqlite:///results/demo/study.db` (the
default, one machine), `postgresql://user:pw@host/db` or `mysql://...` (many machines). Every
worker records a heartbeat every `heartbeat_interval` seconds; a running trial without one for
`grace_period` seconds is failed and re-queued up to `max_retries` times by Optuna's
`RetryHeartbeatStaleTrialCallback`.

Why SQLite needs help: Python's sqlite3 driver only opens a transaction at the first write, so
Optuna's "read the trial, check it is WAITING, set it RUNNING" runs its read outside the
transaction, and two workers can both claim the same waiting trial (measured: 8 processes
popping 300 enqueued trials claimed 409). We make every SQLite transaction `BEGIN IMMEDIATE`
(SQLAlchemy's documented recipe for pysqlite), which takes the write lock before the read, so the
check-and-set is atomic. PostgreSQL and MySQL already lock the row (`SELECT ... FOR UPDATE`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from autoprumux.errors import SpecError, StorageError
from autoprumux.spec import WorkerSettings

SQLITE_BUSY_TIMEOUT_S = 60.0


def redact_url(url: str) -> str:
    """The storage URL with its password replaced by ***, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: it holds no password we could find either
        return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///` URL (None for other back ends and in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _serialise_sqlite_transactions(engine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, begins transactions

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened before the listeners existed


def open_storage(url: str, workers: WorkerSettings | None = None, *, create: bool = False):
    """Open an Optuna `RDBStorage` at `url`, with heartbeats and retries when `workers` is given.

    `create=True` also creates the folder of a SQLite file; without it a missing SQLite file is
    an error (nothing to read). Unreachable servers, missing drivers and malformed URLs raise
    `StorageError` with one line naming the (password-redacted) URL.
    """
    import optuna

    shown = redact_url(url)
    if "://" not in url:
        raise StorageError(
            f"storage = {url!r} is invalid; expected an Optuna storage URL such as "
            "sqlite:///results/demo/study.db or postgresql://user:pw@host/db"
        )
    if workers is not None and workers.grace_period <= workers.heartbeat_interval:
        raise SpecError(
            f"workers.grace_period = {workers.grace_period} is invalid; expected more seconds than "
            f"workers.heartbeat_interval = {workers.heartbeat_interval} (e.g. 3 times as many)"
        )
    db_file = sqlite_path(url)
    if db_file is not None:
        if create:
            try:
                db_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder of storage {shown}: {exc.strerror or exc}") from None
        elif not db_file.is_file():
            raise StorageError(f"storage {shown} does not exist; start the sweep with `autoprumux sweep SPEC`")
    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if db_file is not None else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs: dict = {}
            if workers is not None:
                kwargs = dict(
                    heartbeat_interval=workers.heartbeat_interval,
                    grace_period=workers.grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=workers.max_retries
                    ),
                )
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except ImportError:
        scheme = url.split("://", 1)[0]
        raise StorageError(
            f"storage {shown} needs a database driver for {scheme!r} that is not installed "
            "(e.g. pip install psycopg2-binary for postgresql, pymysql for mysql+pymysql)"
        ) from None
    except Exception as exc:  # SQLAlchemy's and the drivers' many connection errors
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise StorageError(f"cannot open storage {shown}: {type(exc).__name__}: {reason}") from None
    if storage.engine.name == "sqlite":
        _serialise_sqlite_transactions(storage.engine)
    return storage
