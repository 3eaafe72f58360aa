"""Opening a sweep's Optuna storage so that it survives many machines, restarts and races.

Any SQLAlchemy URL Optuna's `RDBStorage` accepts works: `sqlite:///results/demo/study.db` (the
default, one machine), `postgresql://user:pw@host/db` (many machines; `pip install
'autoprumux[postgres]'` brings the psycopg driver) or `mysql+pymysql://...`. Every worker records
a heartbeat every `heartbeat_interval` seconds; a running trial without one for `grace_period`
seconds is failed and re-queued up to `max_retries` times (`RetryHeartbeatStaleTrialCallback`).

What this module adds to a plain `RDBStorage`, and why:

- **Transient errors are retried** (`ResilientRDBStorage`): a database restart or a dropped
  connection raises on the next query. Pooled connections are pre-pinged, and every storage
  call that fails on a lost connection is retried with exponential backoff for `retry_for_s`
  seconds before it gives up with one line.
- **Every connection runs in UTC.** Optuna stamps heartbeats with the server's `now()` in the
  session's time zone; a worker with `PGTZ=Asia/Tokyo` would stamp them nine hours off, and the
  others would declare its healthy trials dead.
- **A connect timeout** (10 s unless the URL sets `connect_timeout`), so a server that accepts and
  never answers is an error, not a hang.
- **`storage_lock`**: one lock per storage (PostgreSQL advisory lock, MySQL `GET_LOCK`, a file
  lock beside a SQLite file) that serialises table creation and queueing, so sweeps started
  together create the tables once and queue every point once.
- **SQLite transactions that really lock.** Python's sqlite3 driver only opens a transaction at
  the first write, so Optuna's "read the trial, check it is WAITING, set it RUNNING" runs its read
  outside the transaction and two workers can claim the same trial (measured: 8 processes popping
  300 trials claimed 409). Every SQLite transaction is `BEGIN IMMEDIATE` (SQLAlchemy's recipe for
  pysqlite). PostgreSQL and MySQL lock the row (`SELECT ... FOR UPDATE`).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url

from autoprumux.errors import SpecError, StorageError, SweepNotStarted
from autoprumux.spec import WorkerSettings

SQLITE_BUSY_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10
RETRY_FOR_S = 300.0  # how long a storage call keeps retrying a lost connection
POSTGRES_HINT = "pip install 'autoprumux[postgres]' (the psycopg driver)"
_log = logging.getLogger("autoprumux.storage")


def redact_url(url: str) -> str:
    """The storage URL with its password replaced by ***, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: it holds no password we could find either
        return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///` URL (None for other back ends and in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _driver_available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def resolve_url(url: str) -> str:
    """Check a storage URL and pick an installed driver for a plain `postgresql://`.

    SQLAlchemy 2.1 maps `postgresql://` to psycopg 3; with only psycopg2 installed, that one is
    used. Raises `StorageError` for a malformed URL, an in-memory database (a sweep's storage must
    outlive the process) and a missing PostgreSQL driver.
    """
    shown = redact_url(url)
    if "://" not in url:
        raise StorageError(
            f"storage = {url!r} is invalid; expected an Optuna storage URL such as "
            "sqlite:///results/demo/study.db or postgresql://user:pw@host/db"
        )
    try:
        parsed = make_url(url)
    except Exception:
        raise StorageError(f"storage = {shown!r} is not a valid database URL; expected e.g. "
                           "postgresql://user:pw@host/db") from None
    if parsed.get_backend_name() == "sqlite" and sqlite_path(url) is None:
        raise StorageError(
            f"storage {shown} is an in-memory database, which ends with the process; a sweep needs "
            "one that outlives it, e.g. sqlite:///results/demo/study.db"
        )
    if parsed.drivername == "postgresql":
        if _driver_available("psycopg"):
            return url
        if _driver_available("psycopg2"):
            return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        raise StorageError(f"storage {shown} needs a PostgreSQL driver; {POSTGRES_HINT}")
    return url


def _engine_kwargs(url: str) -> dict:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    return {"pool_pre_ping": True, "connect_args": connect_args}


def _configure_engine(engine) -> None:
    """UTC sessions (PostgreSQL, MySQL) or immediate transactions (SQLite) on every new connection."""
    backend = engine.dialect.name

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        if backend == "sqlite":
            dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, begins transactions
            return
        statement = "SET TIME ZONE 'UTC'" if backend == "postgresql" else "SET time_zone = '+00:00'"
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()

    if backend == "sqlite":

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened before the listeners existed


def is_transient(error: BaseException) -> bool:
    """True when `error` (or what caused it) is a lost or refused connection, or a busy SQLite."""
    seen = error
    while seen is not None:
        if isinstance(seen, exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, exc.OperationalError | exc.InterfaceError):
            text = str(seen).lower()
            if "sqlite" in text or "no such table" in text:
                return "locked" in text or "busy" in text
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retrying(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        delay, deadline, warned = 0.5, time.monotonic() + self.retry_for_s, False
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as error:
                if not is_transient(error):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"lost storage {redact_url(self.url)} and could not reconnect for "
                        f"{self.retry_for_s:.0f} s: {_reason(error)}"
                    ) from None
                if not warned:
                    _log.warning("storage %s: %s; retrying", redact_url(self.url), _reason(error))
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    return call


def _reason(error: BaseException) -> str:
    root = error
    while root.__cause__ is not None or getattr(root, "orig", None) is not None:
        root = getattr(root, "orig", None) or root.__cause__
    return " ".join(f"{type(root).__name__}: {root}".split())[:300]


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's `RDBStorage` whose calls retry lost connections for `retry_for_s` seconds.

    Heartbeats are not retried here: the worker's heartbeat thread already beats again later.
    """

    retry_for_s: float = RETRY_FOR_S

    def __init__(self, url: str, **kwargs) -> None:
        super().__init__(url, **kwargs)
        _configure_engine(self.engine)

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        _configure_engine(self.engine)


for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
    "create_new_trial", "set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "get_best_trial",
    "_get_stale_trial_ids",
):
    setattr(ResilientRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))


def set_trial_user_attr_once(storage, trial_id: int, key: str, value) -> None:
    """Set a trial's user attribute with one attempt, no retry (for heartbeat threads, which beat again)."""
    method = optuna.storages.RDBStorage.set_trial_user_attr if isinstance(storage, ResilientRDBStorage) else None
    if method is None:
        storage.set_trial_user_attr(trial_id, key, value)
    else:
        method(storage, trial_id, key, value)


def _open_error(shown: str, error: Exception) -> StorageError:
    if isinstance(error, ImportError):
        return StorageError(f"storage {shown} needs a database driver that is not installed "
                            f"({POSTGRES_HINT} for postgresql, pymysql for mysql+pymysql)")
    return StorageError(f"cannot open storage {shown}: {_reason(error)}")


def _has_tables(url: str) -> bool:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **_engine_kwargs(url))
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


def open_storage(url: str, workers: WorkerSettings | None = None, *, create: bool = False):
    """Open the storage at `url` as a `ResilientRDBStorage`, with heartbeats when `workers` is given.

    `create=True` creates Optuna's tables (and the folder of a SQLite file); call it inside
    `storage_lock`. Without it, it takes that lock itself while it opens, and nothing is written: a storage without Optuna's tables, or a
    missing SQLite file, raises `StorageError` (the sweep has not started). Unreachable servers,
    missing drivers and malformed URLs raise `StorageError` with one line naming the
    (password-redacted) URL.
    """
    url = resolve_url(url)
    shown = redact_url(url)
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
            except OSError as error:
                raise StorageError(f"cannot create the folder of storage {shown}: {error.strerror or error}") from None
        elif not db_file.is_file():
            raise SweepNotStarted(f"storage {shown} does not exist; start the sweep with `autoprumux sweep SPEC`")
    if not create:  # Optuna stamps its schema version on open: not while a sweep creates the tables
        with storage_lock(url):
            return _open(url, shown, workers, create=False)
    return _open(url, shown, workers, create=True)


def _open(url: str, shown: str, workers: WorkerSettings | None, *, create: bool):
    try:
        if not create and not _has_tables(url):
            raise SweepNotStarted(f"storage {shown} holds no sweep yet; start one with `autoprumux sweep SPEC`")
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
            return ResilientRDBStorage(url, engine_kwargs=_engine_kwargs(url), skip_table_creation=not create, **kwargs)
    except StorageError:
        raise
    except Exception as error:  # SQLAlchemy's and the drivers' many connection errors
        raise _open_error(shown, error) from None


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def storage_lock(url: str, name: str = "autoprumux", timeout_s: float = 600.0):
    """Hold a lock shared by every process and machine using storage `url` (see the module docstring).

    PostgreSQL: a session advisory lock (released by the server if this process dies); MySQL:
    `GET_LOCK`; SQLite: `flock` on `<database>.lock`. Raises `StorageError` after `timeout_s`.
    """
    url = resolve_url(url)
    db_file = sqlite_path(url)
    if db_file is not None:
        try:
            db_file.parent.mkdir(parents=True, exist_ok=True)
            handle = open(db_file.with_name(db_file.name + ".lock"), "w")  # noqa: SIM115
        except OSError as error:
            raise StorageError(f"cannot create the folder of storage {redact_url(url)}: {error.strerror or error}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **_engine_kwargs(url))
    backend = engine.dialect.name
    try:
        connection = engine.connect()
    except Exception as error:
        engine.dispose()
        raise _open_error(redact_url(url), error) from None
    try:
        if backend == "postgresql":
            connection.exec_driver_sql(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'")
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({_lock_key(name)})")
            connection.commit()
            release = f"SELECT pg_advisory_unlock({_lock_key(name)})"
        elif backend == "mysql":
            got = connection.exec_driver_sql(f"SELECT GET_LOCK('{name}', {int(timeout_s)})").scalar()
            if got != 1:
                raise StorageError(f"storage {redact_url(url)}: lock {name!r} not free after {timeout_s:.0f} s")
            release = f"SELECT RELEASE_LOCK('{name}')"
        else:
            release = None
        try:
            yield
        finally:
            if release is not None:
                try:
                    connection.exec_driver_sql(release)
                    connection.commit()
                except Exception:  # a lost connection released the lock already
                    pass
    finally:
        connection.close()
        engine.dispose()
