"""Opening the store: the URL checked and named in every error, the engine tuned for its database, the
schema migrated to the version this code expects.

SQLite runs in WAL mode: readers never block the writer. What is acknowledged to a caller (feedback, a
review's resolution) commits with ``synchronous=FULL``: on disk before the answer, whatever happens next.
The decision log's batches, which acknowledge nothing, commit with ``synchronous=NORMAL``: they survive
the process being killed, not a power cut, and skip an fsync per batch (measured here: 58 against 19 us
of CPU per decision, benchmarks/decision_log_cost.py). Several
processes migrate at start-up (the workers of one machine, the replicas of a deployment) and must not
migrate at once: a file lock beside the SQLite file, an advisory lock on PostgreSQL.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from smallguard.server.domain.errors import StoreError

log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines (plugins, contexts) say nothing to operators

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest migration (tests/store checks it is Alembic's head): a store already there is opened without
# importing Alembic at all, which a serving process then does not carry.
SCHEMA_REVISION = "0003"
_PG_MIGRATION_LOCK = 0x736D_616C_6C67  # pg_advisory_lock key: "smallg"
CONNECT_TIMEOUT_S = 5


def default_store_url() -> str:
    """A SQLite file in the user's state folder ($XDG_STATE_HOME, else ~/.local/state): kept across restarts."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(state) / 'smallguard' / 'store.sqlite3'}"


def describe(url: str | URL) -> str:
    """The URL for messages and logs, its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True) if isinstance(url, str) else \
            url.render_as_string(hide_password=True)
    except ArgumentError:
        return "an unparseable URL"


def parse_store_url(raw: str) -> URL:
    """The URL of a SQLite file or a PostgreSQL database; StoreError naming what was expected otherwise."""
    expected = "expected sqlite:///PATH/TO/FILE or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    try:
        url = make_url(raw)
    except ArgumentError:
        raise StoreError(f"--store {describe(raw)!r} is not a database URL; {expected}") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if url.get_driver_name() not in ("", "pysqlite"):
            raise StoreError(f"--store {describe(url)!r}: the SQLite driver {url.get_driver_name()!r} is not "
                             "supported; use sqlite:///PATH")
        return url.set(drivername="sqlite+pysqlite")
    raise StoreError(f"--store {describe(url)!r}: {backend!r} databases are not supported; {expected}")


def open_engine(raw: str) -> Engine:
    """An engine for the store at ``raw``, connected once to prove it answers; StoreError otherwise."""
    url = parse_store_url(raw)
    where = describe(url)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, where)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8, pool_timeout=5,
                               connect_args={"connect_timeout": CONNECT_TIMEOUT_S,
                                             "application_name": "smallguard"})
    try:
        with startup_lock(url), engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        engine.dispose()
        raise StoreError(f"cannot reach the store {where}: {first_line(error)}") from None
    return engine


def _sqlite_engine(url: URL, where: str) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:"):  # one process, forgotten on exit: for tests and offline replays
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the folder of the store {where}: {error}") from None
        engine = create_engine(url.set(database=str(path)), pool_size=8, max_overflow=8, pool_timeout=5,
                               connect_args={"timeout": CONNECT_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # pysqlite's own transaction handling would defer BEGIN past reads; SQLAlchemy emits BEGIN itself
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (f"busy_timeout={CONNECT_TIMEOUT_S * 1000}", "synchronous=FULL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        # WAL is a property of the file, set once (under the start-up lock): switching takes an exclusive lock
        # that does not wait for other connections
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        # a writing transaction takes the write lock at once, so that it waits (busy_timeout) for another
        # process's writer instead of failing when it upgrades a read lock
        options = connection.get_execution_options()
        if options.get("writes", False):
            connection.exec_driver_sql(f"PRAGMA synchronous={'FULL' if options.get('durable', True) else 'NORMAL'}")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def migrate(engine: Engine) -> str:
    """Bring the schema to this code's version (``alembic upgrade head``), one process at a time; the revision."""
    where = describe(engine.url)
    try:
        if _revision(engine) == SCHEMA_REVISION:
            return SCHEMA_REVISION
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        scripts = ScriptDirectory.from_config(config)
        head = scripts.get_current_head() or ""
        with startup_lock(engine.url), _advisory_lock(engine), engine.begin() as connection:
            current = _revision(engine, connection)
            if current == head:
                return head
            if current is not None and current not in {script.revision for script in scripts.walk_revisions()}:
                raise StoreError(f"the store {where} is at schema revision {current!r}, which this smallguard does "
                                 f"not know (its newest is {head!r}): a newer smallguard migrated it")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            log.info("store %s migrated from revision %s to %s", where, current or "(empty)", head)
    except SQLAlchemyError as error:
        raise StoreError(f"cannot migrate the store {where}: {first_line(error)}") from None
    return head


def _revision(engine: Engine, connection: Connection | None = None) -> str | None:
    """The schema revision Alembic recorded in the store, or None for an empty store."""
    if connection is None:
        with engine.connect() as own:
            return _revision(engine, own)
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def startup_lock(url: URL) -> Iterator[None]:
    """One process at a time through a store's first connection and migration: a file lock beside a SQLite
    file (also a PostgreSQL advisory lock in ``migrate``, which is all PostgreSQL needs)."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        yield
        return
    path = Path(database).expanduser()
    with open(f"{path}.startup-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    if engine.url.get_backend_name() != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
            connection.commit()


def first_line(error: BaseException) -> str:
    """A driver error's first line, without SQLAlchemy's background link."""
    message = str(getattr(error, "orig", None) or error).strip().splitlines()
    return message[0] if message else type(error).__name__
