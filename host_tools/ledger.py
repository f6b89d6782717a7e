"""The factory ledger: one row per provisioned device, never a password or a private key.

SQLite (one file) by default; the schema is plain SQL (VARCHAR, CHAR, BIGINT, PRIMARY KEY,
UNIQUE, CREATE TABLE IF NOT EXISTS) so the same statements run on PostgreSQL, given a
`postgresql://` URL and psycopg installed."""


from . import sqldb
from .errors import LedgerError, UsageError

TABLE = "devices"
# What provisioning writes; `replaced_by` is set later, when `provision --force` replaces the
# device's factory record with another device's (the old id is then out of service).
INSERTED = ("device_id", "product", "model", "board", "cert_serial", "cert_sha256",
            "provisioned", "station")
COLUMNS = INSERTED + ("replaced_by",)
SCHEMA = """CREATE TABLE IF NOT EXISTS devices (
    device_id    VARCHAR(64)  NOT NULL,
    product      VARCHAR(64)  NOT NULL,
    model        VARCHAR(64)  NOT NULL,
    board        VARCHAR(32)  NOT NULL,
    cert_serial  VARCHAR(40)  NOT NULL,
    cert_sha256  CHAR(64)     NOT NULL,
    provisioned  BIGINT       NOT NULL,
    station      VARCHAR(64)  NOT NULL,
    replaced_by  VARCHAR(64),
    CONSTRAINT devices_pkey PRIMARY KEY (device_id),
    CONSTRAINT devices_cert_sha256_key UNIQUE (cert_sha256),
    CONSTRAINT devices_cert_serial_key UNIQUE (cert_serial)
)"""


class DuplicateError(LedgerError):
    pass


class Ledger(sqldb.Store):
    """A DB-API connection holding the `devices` table. Use as a context manager."""

    WHAT = "the ledger"
    FAIL = LedgerError

    @staticmethod
    def _errors(db):
        return (db.integrity,)

    def __init__(self, conn, paramstyle, integrity_errors):
        self.conn = conn
        self._ph = "?" if paramstyle == "qmark" else "%s"
        self._integrity = integrity_errors
        cur = conn.cursor()
        cur.execute(SCHEMA)
        if "replaced_by" not in self.columns():  # a ledger made before the column existed
            cur.execute(f"ALTER TABLE {TABLE} ADD COLUMN replaced_by VARCHAR(64)")
        conn.commit()

    def insert(self, row):
        """Add one device (not committed: commit() or rollback() follow). Raises
        DuplicateError if the id, the certificate or its serial is already there."""
        missing = [c for c in INSERTED if c not in row]
        if missing:
            raise UsageError(f"ledger row lacks {', '.join(missing)}")
        sql = (f"INSERT INTO {TABLE} ({', '.join(INSERTED)}) "
               f"VALUES ({', '.join([self._ph] * len(INSERTED))})")
        try:
            self.conn.cursor().execute(sql, tuple(row[c] for c in INSERTED))
        except self._integrity as e:
            self.conn.rollback()
            raise DuplicateError(f"device {row['device_id']} or its certificate is already "
                                 f"in the ledger ({e})") from None

    def commit(self):
        self.conn.commit()

    def rollback(self):
        self.conn.rollback()

    def has(self, device_id):
        cur = self.conn.cursor()
        cur.execute(f"SELECT 1 FROM {TABLE} WHERE device_id = {self._ph}", (device_id,))
        return cur.fetchone() is not None

    def mark_replaced(self, device_id, by):
        """Record that `by` replaced `device_id`'s factory record on its target (not
        committed). Returns whether `device_id` was in the ledger."""
        cur = self.conn.cursor()
        cur.execute(f"UPDATE {TABLE} SET replaced_by = {self._ph} WHERE device_id = {self._ph}",
                    (by, device_id))
        return cur.rowcount > 0

    def rows(self):
        """Every row as a dict, oldest first."""
        cur = self.conn.cursor()
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY provisioned, device_id")
        return [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]

    def columns(self):
        """Column names of the devices table as the database reports them."""
        cur = self.conn.cursor()
        cur.execute(f"SELECT * FROM {TABLE} WHERE 1 = 0")
        return [d[0] for d in cur.description]
