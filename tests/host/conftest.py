"""Fixtures shared by the host tests: a factory key folder, and the service side's databases
on both back ends (SQLite, and a throw-away PostgreSQL server: Debian's `postgresql`,
`initdb` into a temporary folder as a non-root user, a free loopback port)."""

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from host_tools import ca, keys
from tests.system import need

_db_names = itertools.count()


@pytest.fixture
def factory(tmp_path):
    """A key folder with signing keys and the manufacturer CA."""
    d = tmp_path / "keys"
    keys.init(d)
    ca.init(d)
    return d


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for this module; yields (host, port, user). The server refuses to
    run as root, so as root it runs as Debian's `postgres` user (runuser)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    initdb = need(str(found[-1]) if found else "/usr/lib/postgresql/15/bin/initdb", "postgresql")
    pg_ctl = str(Path(initdb).parent / "pg_ctl")
    prefix, owner = [], None
    if os.geteuid() == 0:
        need("/usr/sbin/runuser", "util-linux")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("no `postgres` user: apt-get install --reinstall postgresql", pytrace=False)
        prefix = ["/usr/sbin/runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
    data = base / "data"
    if owner:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    try:
        subprocess.run(prefix + [initdb, "-D", str(data), "-A", "trust", "-U", "ledger",
                                 "--no-sync"], check=True, capture_output=True, timeout=120)
        for _attempt in range(3):  # another process may take the free port first
            port = _free_port()
            proc = subprocess.run(
                prefix + [pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(base / "log"),
                          "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -F", "start"],
                capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                break
        else:
            pytest.fail(f"PostgreSQL did not start: {proc.stderr}\n"
                        f"{(base / 'log').read_text(errors='replace')[-2000:]}", pytrace=False)
        yield "127.0.0.1", port, "ledger"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def new_database(request, tmp_path, stem):
    """A fresh, empty database for `request.param`: a SQLite file in tmp_path, or a new
    database on the session's PostgreSQL server. Returns the path or URL."""
    if request.param == "sqlite":
        return str(tmp_path / f"{stem}.sqlite")
    host, port, user = request.getfixturevalue("postgres_server")
    name = f"{stem}_{os.getpid()}_{next(_db_names)}"
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql://{user}@{host}:{port}/{name}"
