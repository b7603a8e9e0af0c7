"""The late-bound Peewee database: SQLite by default, pooled PostgreSQL in production."""
import contextlib
import logging
from urllib.parse import unquote, urlparse

from peewee import DatabaseProxy, SqliteDatabase
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from deltallm.config import installed
from deltallm.urls import DEFAULT_SQLITE, sqlite_path
from deltallm.errors import ConfigError

logger = logging.getLogger(__name__)
SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 10000, "foreign_keys": 1, "synchronous": "normal"}

database = DatabaseProxy()


def make_database(url=None):
    """A Peewee database for a URL: `sqlite:///path`, a bare path, or `postgres[ql]://...`."""
    url = url or DEFAULT_SQLITE
    parsed = urlparse(url)
    if parsed.scheme in ("postgres", "postgresql"):
        if not installed("psycopg2"):  # Peewee would only say so on the first query
            raise ConfigError("database_url: PostgreSQL needs the psycopg2 driver: "
                              "pip install 'deltallm[postgres]'")
        green_psycopg()
        return PooledPostgresqlDatabase(
            unquote(parsed.path.lstrip("/")) or "postgres",
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432,
            max_connections=32, stale_timeout=300, timeout=10, autoconnect=True)
    if parsed.scheme in ("sqlite", "", "file"):
        path = sqlite_path(url)
    else:
        raise ValueError(f"unsupported database_url scheme '{parsed.scheme}' (use sqlite:/// or postgres://)")
    # The pool lends a connection to one thread at a time, but not always to the thread that opened it:
    # a batch job's lines run on threads of their own (sqlite3 is built serialized, so a hand-over is safe)
    return PooledSqliteDatabase(path, max_connections=64, stale_timeout=300, timeout=10, pragmas=SQLITE_PRAGMAS,
                                check_same_thread=False)


def green_psycopg():
    """Under gevent, psycopg2 must wait cooperatively or one query blocks the whole worker."""
    try:
        from gevent import monkey
        if not monkey.is_module_patched("socket"):
            return
        from psycogreen.gevent import patch_psycopg
    except ImportError:
        return
    patch_psycopg()


def init(url=None):
    db = make_database(url)
    database.initialize(db)
    return db


@contextlib.contextmanager
def connection():
    """Use a pooled connection for a block and hand it back, unless one was already open here."""
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        yield database
    finally:
        if opened:
            database.close()


def for_background_writer(db):
    """The database a background writer (its own thread outside gevent) should use: PostgreSQL's pool
    is shared safely; a SQLite connection belongs to the thread that opened it, so the writer gets its
    own (unpooled) handle on the same file."""
    if isinstance(db, PooledSqliteDatabase):
        return SqliteDatabase(db.database, timeout=10, pragmas=SQLITE_PRAGMAS)
    return db
