"""The connection to the jobs database: SQLite (a file, the embedded default) or PostgreSQL
(clusters). One connection, one statement at a time, each call a transaction; a lost
connection is dropped (the next call reconnects) and raised as `StoreUnavailable` (503: the
request can be retried). `migrate` creates the schema or brings it forward, under a lock on
PostgreSQL so two replicas starting together do not race.

One SQL text serves both databases where they agree: placeholders are written `?` and turned
into psycopg's `%s` here.

SQLite is `sqlean.py`'s build (PyPI: the standard `sqlite3` module over a current SQLite that can
load extensions, which many Pythons' own cannot), with the sqlite-vec extension loaded into every
connection: the vectors of library search (jobs/vector_index.py).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlean as sqlite3

from deploy.config.settings import StoreSettings
from deploy.jobs.records import StoreError, StoreUnavailable
from deploy.jobs.schema import MIGRATIONS, SCHEMA_VERSION

logger = logging.getLogger("ray.serve.vidserve.store")


class Database:
    """SQLite; `PostgresDatabase` overrides where PostgreSQL differs."""

    dialect = "sqlite"

    def __init__(self, connect: Callable[[], Any], describe: str) -> None:
        self._connect = connect
        self.describe = describe  # the URL without its password, for messages
        self._lock = threading.Lock()
        self._conn: Any = None

    @contextmanager
    def tx(self) -> Iterator[Any]:
        """A cursor in a transaction (committed at the end, rolled back on an error); a broken
        connection is dropped so the next call reconnects."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                cursor = self._conn.cursor()
                try:
                    yield cursor
                    self._conn.commit()
                except BaseException:
                    self._conn.rollback()
                    raise
                finally:
                    cursor.close()
            except self._lost_errors() as exc:
                self._drop()
                raise StoreUnavailable(
                    f"the jobs database ({self.describe}) cannot be reached: {exc}; "
                    "retry once it is back",
                    details={"retry_after_s": 2},
                ) from exc

    def run(self, cursor: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        cursor.execute(self._sql(statement), tuple(params))
        return cursor

    def close(self) -> None:
        with self._lock:
            self._drop()

    def version(self) -> int:
        with self.tx() as cur:
            self.run(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.run(cur, "SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Create the schema, or bring it up to SCHEMA_VERSION; the version now."""
        with self.tx() as cur:
            self._lock_schema(cur)
            self.run(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = int(
                self.run(cur, "SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            )
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the jobs database ({self.describe}) has schema version {current}, newer "
                    f"than this vidserve's {SCHEMA_VERSION}: upgrade vidserve or use another "
                    "database"
                )
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements[self.dialect]:
                        self.run(cur, statement)
                    self.run(cur, "INSERT INTO schema_version (version) VALUES (?)", [version])
                    logger.info("jobs database %s: schema version %d", self.describe, version)
        return max(current, SCHEMA_VERSION)

    def _lost_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.OperationalError,)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a broken connection may fail to close; it is gone
                logger.debug("closing a broken database connection failed", exc_info=True)
            self._conn = None

    def _sql(self, statement: str) -> str:
        return statement

    def _lock_schema(self, cursor: Any) -> None:
        """SQLite: the write transaction is the lock (BEGIN IMMEDIATE)."""
        self.run(cursor, "SELECT 1")


class PostgresDatabase(Database):
    dialect = "postgresql"

    def _lost_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.OperationalError, psycopg.InterfaceError)

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _lock_schema(self, cursor: Any) -> None:
        """Replicas starting together migrate one at a time (a transaction-scoped lock)."""
        self.run(cursor, "SELECT pg_advisory_xact_lock(7263517)")


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def connect(url: str, settings: StoreSettings) -> Database:
    """The database `url` names (nothing is opened until the first call)."""
    return _sqlite(url) if url.startswith("sqlite:///") else _postgres(url, settings)


def _sqlite(url: str) -> Database:
    path = Path(url.removeprefix("sqlite:///"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create {path.parent} for the jobs database: {exc}; set jobs.data_dir or "
            "store.url to a writable place"
        ) from exc

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        _load_sqlite_vec(conn)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    return Database(connect, f"sqlite:///{path}")


def _load_sqlite_vec(conn: Any) -> None:
    import sqlite_vec

    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)


def _postgres(url: str, settings: StoreSettings) -> PostgresDatabase:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        raise StoreError("store.url is PostgreSQL but psycopg is not installed") from exc
    conninfo = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)

    def connect() -> Any:
        return psycopg.connect(conninfo, connect_timeout=max(1, round(settings.connect_timeout_s)))

    return PostgresDatabase(connect, redact(url))
