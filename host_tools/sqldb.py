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
