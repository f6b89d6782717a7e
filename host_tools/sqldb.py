"""One way to open the service side's databases (the factory ledger, the rollout store): a path
is a SQLite file, a postgresql:// URL a PostgreSQL database through psycopg. Both speak the
portable SQL their schemas are written in."""

import sqlite3
from pathlib import Path

from .errors import UsageError


class Db:
    """An open connection: `conn`, the placeholder `ph` ("?" or "%s"), and the driver's
    `error` and `integrity` exception classes."""

    def __init__(self, conn, ph, error, integrity):
        self.conn, self.ph, self.error, self.integrity = conn, ph, error, integrity


def connect(where, what, fail):
    """Open `where` for `what` ("the ledger"); `fail` is the error class raised when the
    database cannot be opened (a bad path is a UsageError)."""
    where = str(where)
    if where.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError:
            raise UsageError(f"a PostgreSQL {what} needs psycopg (pip install psycopg)") from None
        try:
            return Db(psycopg.connect(where), "%s", psycopg.Error, psycopg.IntegrityError)
        except psycopg.Error as e:
            raise fail(f"cannot open {what}: {e}") from None
    path = Path(where)
    if not path.parent.is_dir():
        raise UsageError(f"{what} folder {path.parent} does not exist")
    try:
        # The monitor's MQTT thread writes the rollout store too.
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    except sqlite3.Error as e:
        raise fail(f"cannot open {what} {path}: {e}") from None
    return Db(conn, "?", sqlite3.Error, sqlite3.IntegrityError)


class Store:
    """Base of a service-side store over one connection: open() by path or URL, a context
    manager, close(). Subclasses set WHAT ("the ledger"), FAIL (their error class) and
    `_errors(db)`, the driver exceptions their constructor is given to translate."""

    WHAT = "the store"
    FAIL = UsageError

    @staticmethod
    def _errors(db):
        return (db.error,)

    @classmethod
    def open(cls, where):
        """A path (SQLite) or a postgresql:// URL."""
        db = connect(where, cls.WHAT, cls.FAIL)
        try:
            return cls(db.conn, "qmark" if db.ph == "?" else "format", cls._errors(db))
        except db.error as e:
            db.conn.close()
            raise cls.FAIL(f"cannot use {cls.WHAT} {where}: {e}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.conn.close()
