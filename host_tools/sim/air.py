"""The air around a simulated device with a radio (sim.json "radio": true): the home networks
in range, the device's set-up access point as a phone sees it, and a phone joining it.
The device side is boards/unix/wifiradio.py; the files are described there."""

import itertools
import json
import os
import time
from pathlib import Path

from ..errors import DeviceError

_seq = itertools.count(1)


def air(d):
    p = Path(d) / "air"
    p.mkdir(parents=True, exist_ok=True)
    return p


def enable(d, window_s=None, setup_port=None):
    """Give the simulated device in `d` a Wi-Fi radio (before it starts)."""
    cfg_path = Path(d) / "sim.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["radio"] = True
    if window_s is not None:
        cfg["setup_window_s"] = window_s
    if setup_port is not None:
        cfg["setup_port"] = setup_port
    cfg_path.write_text(json.dumps(cfg))


def set_networks(d, networks):
    """The home networks in range: {ssid: passphrase}."""
    doc = {ssid: {"key": key, "address": "192.168.1.%d" % (50 + i)}
           for i, (ssid, key) in enumerate(sorted(networks.items()))}
    tmp = air(d) / "networks.json.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, air(d) / "networks.json")


def access_point(d):
    """The set-up AP as a phone's scan shows it ({"ssid", "security", ...}), or None."""
    try:
        return json.loads((air(d) / "ap.json").read_text())
    except (OSError, ValueError):
        return None


def station(d):
    """The device's station state {"ssid", "status", "address"}, or None."""
    try:
        return json.loads((air(d) / "sta.json").read_text())
    except (OSError, ValueError):
        return None


def join(d, ssid, key, mac=None, timeout=10.0):
    """A phone joins the AP `ssid` with `key`: the AP's address, or DeviceError saying why not
    (no such network in range, wrong passphrase, access point full)."""
    ap = access_point(d)
    if ap is None or ap.get("ssid") != ssid:
        raise DeviceError(f"no network {ssid!r} in range")
    mac = mac or "02:00:00:00:00:%02x" % (next(_seq) % 256)
    n = f"{os.getpid()}-{next(_seq)}"
    req, reply = air(d) / f"join-{n}.json", air(d) / f"join-{n}.reply"
    tmp = air(d) / f".join-{n}.tmp"
    tmp.write_text(json.dumps({"ssid": ssid, "key": key, "mac": mac}))
    os.replace(tmp, req)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = json.loads(reply.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        reply.unlink(missing_ok=True)
        if not doc.get("ok"):
            raise DeviceError(f"could not join {ssid!r}: {doc.get('reason')}")
        return doc["address"]
    req.unlink(missing_ok=True)
    raise DeviceError(f"no answer from {ssid!r} within {timeout:.0f} s")
