"""Opening MLflow for doodl: one client setup for every module that talks to MLflow.

A SQLite database is tuned for many small commits (:func:`_fast_sqlite`), its tables are
made by one process at a time (:func:`one_creator`), MLflow's tracebacks of a locked
database are left out (doodl says it in one line) and calls are retried while it is locked
(:class:`RetryOnLock`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

# Seconds to wait before each retry of a call that found the SQLite database locked (by
# another writer). Each attempt itself waits up to 20 s for the lock (MLflow's busy_timeout).
LOCK_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
log = logging.getLogger("doodl.mlflow")


def _fast_sqlite() -> None:
    """Make SQLite tracking databases commit without waiting for the disk each time: WAL
    journal, ``synchronous=NORMAL``. A commit then costs a write to the journal, not an
    fsync. On power loss the last commits can be lost; the MLflow view is rebuilt from the
    store by ``doodl sync``, so doodl trades that for several times faster logging. WAL also
    lets ``mlflow ui`` read while a sweep writes. It is meant for a database on a local disk.
    Registered once per process, for SQLite connections only."""
    global _SQLITE_TUNED
    if _SQLITE_TUNED:
        return
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _tune(dbapi_connection, _record) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    _SQLITE_TUNED = True


_SQLITE_TUNED = False


def _locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


@contextlib.contextmanager
def one_creator(tracking_uri: str):
    """Hold an exclusive file lock, one per SQLite database, while the body opens it: MLflow
    creates the tables and runs its migrations when it finds none, with no lock of its own
    on that path, so two commands opening one new database at once both migrate it and one
    fails (``table runs already exists``, alembic's "Online migration expected"). With the
    lock the second waits, then finds the tables made. The lock file is in the temporary
    directory, named by the database's absolute path (the database is meant for a local
    disk, as :func:`_fast_sqlite` says), so nothing is left beside it. Other stores are
    opened as they are."""
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not tracking_uri.startswith("sqlite:///") or path in ("", ":memory:"):
        yield
        return
    import fcntl
    import hashlib
    import tempfile

    key = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:16]
    with open(os.path.join(tempfile.gettempdir(), f"doodl-mlflow-create-{key}.lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


class _HandledByDoodl(logging.Filter):
    """Drops MLflow's log record of a locked SQLite database (``mlflow.store.db.utils`` logs
    the error with two tracebacks, about 30 lines, on every attempt, then raises it): doodl
    retries the call and says so in one line, and if it still fails, defers logging in one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not _locked(exc)


def _quiet_mlflow_errors() -> None:
    """Install :class:`_HandledByDoodl` on MLflow's SQL store logger, once per process."""
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _HandledByDoodl) for f in logger.filters):
        logger.addFilter(_HandledByDoodl())


def tracking_client(tracking_uri: str, lock_retry_delays=LOCK_RETRY_DELAYS):
    """An MlflowClient as doodl uses one, for writing or reading: a SQLite database tuned
    (:func:`_fast_sqlite`), MLflow's locked-database tracebacks left out, its tables made
    by one process at a time (:func:`one_creator`), and calls retried while it is locked."""
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:"):
        _fast_sqlite()
        _quiet_mlflow_errors()
        with one_creator(tracking_uri):  # the first call opens the store: a new database's tables, made once
            client = MlflowClient(tracking_uri=tracking_uri)
            client.search_experiments(max_results=1)
    else:
        client = MlflowClient(tracking_uri=tracking_uri)
    return RetryOnLock(client, lock_retry_delays)


class RetryOnLock:
    """An MlflowClient whose calls are retried with backoff while SQLite says "database is
    locked". A failed call's transaction was rolled back, so trying it again is safe."""

    def __init__(self, client, delays=LOCK_RETRY_DELAYS):
        self._client = client
        self._delays = tuple(delays)

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            for delay in (*self._delays, None):
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:
                    if delay is None or not _locked(exc):
                        raise
                    log.warning("MLflow database is locked (%s); retrying in %.0f s", name, delay)
                    time.sleep(delay)
            raise AssertionError("unreachable")

        return call
