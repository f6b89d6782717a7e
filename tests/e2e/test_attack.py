"""Under attack on the owner's network (a stranger at another address of the LAN): the owner
is never locked out. Connection exhaustion (silent sockets and byte-a-time TLS handshakes)
and a login hammer, each reproduced against a running simulated device."""

import json
import socket
import ssl
import time

from host_tools import push, sim

from .slowloris import Attack
from .test_push import _read_all

STRANGER = "127.0.0.2"  # another host on the owner's network (Linux routes all of 127/8 here)


def _owner(d, info, keydir, timeout):
    return push.Device(sim.https_address(d), info["password"], ca=keydir / "ca.crt",
                       name=info["device_id"], timeout=timeout)


def test_owner_served_while_a_stranger_holds_sockets(app_device, keydir):
    """8 silent sockets and 8 ClientHellos sent a byte every 250 ms, each reopened as soon as
    the device drops it: the owner logs in and is answered within 3 s, every time."""
    d, _, info = app_device
    host, port = push.parse_device(sim.https_address(d))
    with Attack(host, port, STRANGER, idle=8, slow=8, name=info["device_id"]) as attack:
        time.sleep(1.0)  # the stranger holds every slot it can get
        owner = _owner(d, info, keydir, timeout=3.0)
        times = []
        for i in range(6):
            t0 = time.monotonic()
            if i == 0:
                owner.login()
            assert owner.status()["version"] == "1.0.0"  # DeviceError after 3 s
            times.append(time.monotonic() - t0)
            time.sleep(0.3)
        opened, dropped = attack.opened, attack.dropped
    assert max(times) < 3.0, times
    # The device dropped the stranger's sockets to serve the owner, and it kept opening more.
    assert opened >= 16 + 6 and dropped >= 6, (opened, dropped)
    log = sim.log_tail(d, 200)
    assert "Traceback" not in log, log


def test_silent_and_slow_sockets_are_dropped_on_their_own(app_device, keydir):
    """With no one else to make room for, a silent socket is closed 3 s after accept and a
    handshake that does not finish in time too (no 408: there is no TLS to answer in)."""
    d, _, info = app_device
    host, port = push.parse_device(sim.https_address(d))
    with Attack(host, port, STRANGER, idle=1, slow=1, name=info["device_id"]) as attack:
        time.sleep(2.0)
        early = attack.dropped
        time.sleep(2.5)
        dropped = attack.dropped
    assert early == 0 and dropped >= 2, (early, dropped)  # both, 3 s after accept
    assert _owner(d, info, keydir, timeout=3.0).status()["version"] == "1.0.0"


def _login_from(d, info, keydir, source, password):
    """POST /api/login from `source` (a local address): (status, Retry-After)."""
    host, port = push.parse_device(sim.https_address(d))
    ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
    body = json.dumps({"password": password}).encode()
    raw = (b"POST /api/login HTTP/1.1\r\nHost: th\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    s = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
    with ctx.wrap_socket(s, server_hostname=info["device_id"]) as t:
        t.sendall(raw)
        answer = _read_all(t)
    head = answer.split(b"\r\n\r\n")[0].decode()
    retry = [line.split(":", 1)[1].strip() for line in head.split("\r\n")
             if line.lower().startswith("retry-after:")]
    return int(head[9:12]), (int(retry[0]) if retry else None)


def test_login_hammer_from_a_stranger_does_not_lock_the_owner_out(app_device, keydir):
    """200 wrong passwords from one address: that address is throttled, the owner's address
    is not; from the stranger's own address, a press of the button (physical presence) lets
    the correct password in at once."""
    d, _, info = app_device
    codes = [_login_from(d, info, keydir, STRANGER, "guess-%d" % i)[0] for i in range(200)]
    assert set(codes) <= {401, 429} and codes.count(429) > 150, codes
    status, retry = _login_from(d, info, keydir, STRANGER, info["password"])
    assert status == 429 and retry >= 1  # the stranger's address waits, even with the password
    t0 = time.monotonic()
    assert _login_from(d, info, keydir, "127.0.0.1", info["password"])[0] == 200
    assert time.monotonic() - t0 < 3.0
    # The owner at the device, on the stranger's address (a shared NAT, a borrowed laptop):
    status, _ = _login_from(d, info, keydir, STRANGER, info["password"])
    assert status == 429
    button = d / "button"
    button.touch()  # a short press
    time.sleep(0.4)
    button.unlink()
    assert _login_from(d, info, keydir, STRANGER, info["password"])[0] == 200
    assert "presence window open" in sim.log_tail(d, 50)
