"""The factory ledger on both of its back ends: SQLite (a file, the default) and PostgreSQL (a
throw-away server, tests/host/conftest.py: Debian's `postgresql`, `initdb` into a temporary
folder as a non-root user, listening on a free loopback port). The same tests run on each."""

import socket

import pytest

from host_tools import ledger, provision
from host_tools.errors import DeviceError, LedgerError, UsageError
from tests.host.conftest import new_database

ITER = 1000


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """Where a fresh, empty ledger lives: a SQLite file, or a new PostgreSQL database."""
    return new_database(request, tmp_path, "ledger")


ROW = {"device_id": "th-x", "product": "p", "model": "m", "board": "unix", "cert_serial": "1",
       "cert_sha256": "a" * 64, "provisioned": 1, "station": "s"}


def test_schema_and_duplicates(where):
    with ledger.Ledger.open(where) as lg:
        assert lg.columns() == list(ledger.COLUMNS)
        cols = lg.columns()
        for bad in ("pass", "key", "salt", "hash", "secret", "pin"):
            assert not [c for c in cols if bad in c.lower() and c != "cert_sha256"], bad
        lg.insert(ROW)
        lg.commit()
        # The same id, the same certificate, or the same serial: each refused, nothing stored.
        for change in ({"cert_serial": "2", "cert_sha256": "b" * 64},
                       {"device_id": "th-y", "cert_serial": "2"},
                       {"device_id": "th-z", "cert_sha256": "c" * 64}):
            with pytest.raises(ledger.DuplicateError):
                lg.insert({**ROW, **change})
        assert lg.rows() == [{**ROW, "replaced_by": None}]
        assert lg.has("th-x") and not lg.has("th-y")
        with pytest.raises(UsageError, match="lacks station"):
            lg.insert({k: v for k, v in ROW.items() if k != "station"})
        assert len(lg.rows()) == 1
        # `provision --force` marks the replaced record; an unknown id marks nothing.
        assert lg.mark_replaced("th-x", "th-new") and not lg.mark_replaced("th-q", "th-new")
        lg.commit()
        assert lg.rows() == [{**ROW, "replaced_by": "th-new"}]


def test_schema_is_portable_sql():
    sql = ledger.SCHEMA.upper()
    for sqlite_only in ("AUTOINCREMENT", "WITHOUT ROWID", "INSERT OR", "PRAGMA", " BLOB",
                        "STRICT", "INTEGER PRIMARY KEY"):
        assert sqlite_only not in sql
    assert "PRIMARY KEY (DEVICE_ID)" in sql


def test_provisioning_writes_one_row_per_device(factory, tmp_path, where):
    records = provision.provision(factory, 3, iterations=ITER, ledger=where, station="line-2")
    with ledger.Ledger.open(where) as lg:
        rows = lg.rows()
    assert sorted(r["device_id"] for r in rows) == sorted(r.device_id for r in records)
    assert {r["station"] for r in rows} == {"line-2"}
    # No password of the batch is in any row.
    text = repr(rows)
    assert not [r.password for r in records if r.password in text]
    # A board provisioned again is refused, and the refused attempt adds no row.
    again = tmp_path / "again"
    provision.provision(factory, iterations=ITER, sim=again, ledger=where)
    with pytest.raises(DeviceError, match="already provisioned"):
        provision.provision(factory, iterations=ITER, sim=again, ledger=where)
    with ledger.Ledger.open(where) as lg:
        assert len(lg.rows()) == 4


def test_unreachable_ledger_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        ledger.Ledger.open(tmp_path / "no" / "such" / "ledger.sqlite")
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        ledger.Ledger.open(f"postgresql://nobody@127.0.0.1:{_free_port()}/none")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
