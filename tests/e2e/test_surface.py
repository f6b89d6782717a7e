"""The attack surface of the running simulated device (ETSI TS 103 645 4.6) against
docs/interfaces.md: its listening sockets equal the documented network table, its HTTP
routes equal the documented route table, every route answers a request without a session as
documented and discloses nothing beyond the model, and no REPL is reachable."""

import datetime
import json
import os
import re
import socket
import ssl
from pathlib import Path

from host_tools import mpy, push, sim

from .test_fuzz import http_harness

DOC = (mpy.REPO / "docs" / "interfaces.md").read_text()
ROW = re.compile(r"^\| `([A-Z]+)` \| `([^`]+)` \| (\d{3})", re.M)


def _table(heading):
    part = DOC.split(heading, 1)[1].split("\n## ", 1)[0]
    return part


def _documented_routes():
    return {(m, p): int(code) for m, p, code in ROW.findall(_table("## HTTP routes"))}


def _documented_sockets(https_port, setup_port=None):
    """The network table's sockets that exist on the simulator, as (proto, port); the set-up
    page's only with `setup_port` (a device with a radio, its window open)."""
    out = set()
    for line in _table("## Network").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        proto = cells[0].strip("`").split("/")[0]
        sim_cell = cells[2]
        if sim_cell.startswith("none") or proto == "wifi":
            continue
        if "`setup_port`" in sim_cell:
            if setup_port is not None:
                out.add((proto, setup_port))
        elif "`https_port`" in sim_cell:
            out.add(("tcp", https_port))
        else:
            raise AssertionError(f"cannot read the simulator column: {line}")
    return out


def _listening(pid):
    """(proto, port) of every listening TCP socket and every bound UDP/raw socket of `pid`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            f = line.split()
            if f[9] not in inodes:
                continue
            port = int(f[1].rsplit(":", 1)[1], 16)
            if proto.startswith("tcp") and f[3] != "0A":  # only LISTEN
                continue
            found.add((proto.rstrip("6"), port))
    unix = [line.split()[-1] for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]
            if line.split()[6] in inodes and line.split()[5] == "01"]
    return found, unix


def test_listening_sockets_are_the_documented_ones(app_device):
    d, dev, info = app_device
    pid = int((sim.run_dir(d) / "device.pid").read_text())
    port = sim.sim_config(d)["https_port"]
    found, unix = _listening(pid)
    assert found == _documented_sockets(port) == {("tcp", port)}
    assert unix == []  # no unix-domain socket (e.g. a debug console) is listening
    # No REPL: the device's console input is /dev/null and it runs the frozen entry point.
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"unixboard" in cmd and b"-i" not in cmd
    # The documented port speaks TLS only: plain HTTP gets no HTTP answer.
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = s.recv(4096)
        except OSError:
            answer = b""
    assert not answer.startswith(b"HTTP/")


def test_routes_are_the_documented_ones(tmp_path, keydir, bundles):
    info = sim.create(tmp_path / "dev", keydir, bundles["v1"], iterations=1000)
    h = http_harness(tmp_path / "dev", info["password"])
    try:
        routes = {(m, p) for m, p, _ in h.routes}
    finally:
        h.close()
    assert routes == set(_documented_routes())


def _unauthenticated(ctx, host, port, name, method, path):
    head = f"{method} {path} HTTP/1.1\r\nHost: {name}\r\nContent-Length: 0\r\n"
    if method != "GET":
        head += "Content-Type: " + ("application/json" if path.startswith("/api/") else
                                    "application/x-www-form-urlencoded") + "\r\n"
    s = socket.create_connection((host, port), timeout=20)
    with ctx.wrap_socket(s, server_hostname=name) as t:
        t.sendall(head.encode() + b"\r\n")
        out = b""
        while chunk := t.recv(8192):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head[9:12]), head.decode(), body


def test_without_a_session_only_the_model_is_disclosed(app_device, keydir):
    d, dev, info = app_device
    host, port = push.parse_device(sim.https_address(d))
    ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
    version = dev.status()["version"]
    secrets = [version, info["device_id"], '"slot"', "uptime", "temperature", "Set-Cookie"]
    for (method, path), want in sorted(_documented_routes().items()):
        status, head, body = _unauthenticated(ctx, host, port, info["device_id"], method, path)
        assert status == want, (method, path, status, body[:200])
        if status == 303:
            assert "\r\nLocation: /login" in head, (method, path, head)
        for s in secrets:
            assert s not in head and s.encode() not in body, (method, path, s)
        assert "Server:" not in head
    health = _unauthenticated(ctx, host, port, info["device_id"], "GET", "/api/health")[2]
    assert json.loads(health) == {"ok": True, "model": "TH-1"}


def test_security_txt_follows_rfc_9116(app_device, keydir):
    """/.well-known/security.txt over TLS: RFC 9116 fields, one Expires less than a year
    ahead (renew firmware/disclosure.json's "expires" with each release), nothing else."""
    d, _, info = app_device
    host, port = push.parse_device(sim.https_address(d))
    ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
    status, head, body = _unauthenticated(ctx, host, port, info["device_id"], "GET",
                                          "/.well-known/security.txt")
    assert status == 200 and "Content-Type: text/plain; charset=utf-8" in head
    fields = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        name, sep, value = line.partition(": ")
        assert sep and value.strip() == value, line
        fields.setdefault(name, []).append(value)
    assert set(fields) == {"Contact", "Expires", "Policy", "Preferred-Languages", "Canonical"}
    assert all(re.match(r"(mailto:|https://)", c) for c in fields["Contact"])
    assert fields["Policy"][0].startswith("https://")
    assert fields["Canonical"][0].startswith("https://") and \
        fields["Canonical"][0].endswith("/.well-known/security.txt")
    assert len(fields["Expires"]) == 1
    expires = datetime.datetime.fromisoformat(fields["Expires"][0].replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.UTC)
    assert now < expires <= now + datetime.timedelta(days=366), \
        f"security.txt Expires {expires:%Y-%m-%d}: renew firmware/disclosure.json"


def test_setup_access_point_is_the_only_other_interface(tmp_path, keydir, bundles):
    """A device with a radio: while its set-up access point is open, the documented set-up port
    on the access point's address is the only other listening socket, and it answers only the
    documented routes (and 404 to every route of the API); once the home network is set, it
    is gone."""
    from .test_onboarding import AP_HOST, _configure, _listens, _radio_device, wait

    d, info = _radio_device(tmp_path, keydir, bundles)
    sim.start(d)
    try:
        cfg = sim.sim_config(d)
        port, setup = cfg["https_port"], cfg["setup_port"]
        wait(lambda: _listens(setup), "the set-up page", d=d)
        pid = int((sim.run_dir(d) / "device.pid").read_text())
        assert _listening(pid)[0] == _documented_sockets(port, setup) == {
            ("tcp", port), ("tcp", setup)}
        assert not _listens(port, AP_HOST)  # the API is not on the access point
        ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
        name = info["device_id"] + ".local"
        table = ROW.findall(_table("## HTTP routes on `tcp/setup`"))
        assert {(m, p) for m, p, _ in table} == {("GET", "/setup"), ("POST", "/setup")}
        for m, p, code in table:
            status, head, body = _unauthenticated(ctx, AP_HOST, setup, name, m, p)
            assert status == int(code), (m, p, status, body[:200])
            assert "Set-Cookie" not in head and info["device_id"].encode() not in body
        for m, p in sorted(_documented_routes()):
            if p != "/setup":
                assert _unauthenticated(ctx, AP_HOST, setup, name, m, p)[0] == 404, (m, p)
        assert _configure(d, info, keydir, setup)[0] == 200
        wait(lambda: not _listens(setup), "the access point to close", timeout=20, d=d)
        assert _listening(pid)[0] == _documented_sockets(port) == {("tcp", port)}
    finally:
        sim.powercut(d)
