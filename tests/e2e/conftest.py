"""Fixtures for end-to-end tests on simulated devices."""

import json
import time

import pytest

from host_tools import bundle, ca, keys, push, sim


@pytest.fixture(scope="session")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    keys.init(d)
    ca.init(d)
    return d


@pytest.fixture(scope="session")
def bundles(keydir, tmp_path_factory):
    """v1 (sv 1), v2 (sv 1), v3 (sv 2), a 2.1.0 whose self-test fails, one for another
    board, one signed by keys the device does not know."""
    d = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, version, sv in (("v1", "1.0.0", 1), ("v2", "2.0.0", 1), ("v3", "3.0.0", 2)):
        out[name] = d / f"{name}.bin"
        bundle.build(keydir, ["unix"], version, sv, out=out[name],
                     notes=f"release {version}", security_fix=(sv == 2))
    out["esp32"] = d / "esp32.bin"
    bundle.build(keydir, ["esp32"], "9.0.0", 5, out=out["esp32"])
    stranger = d / "stranger-keys"
    keys.init(stranger)
    out["unknown"] = d / "unknown.bin"
    bundle.build(stranger, ["unix"], "9.0.0", 5, out=out["unknown"])
    meta, files = bundle.collect_app()
    files["selftest.py"] = (b"# a broken release: the self-test always fails\n"
                            b"async def run(thermostat, timeout_ms=0, ticks=0):\n"
                            b"    return 'sensor driver missing'\n")
    out["bad"] = d / "bad.bin"
    bundle.build(keydir, ["unix"], "2.1.0", 1, out=out["bad"], files=files,
                 product=meta["product"])
    return out


@pytest.fixture
def device(tmp_path, keydir, bundles):
    d = tmp_path / "dev"
    sim.create(d, keydir, bundles["v1"])
    yield d
    sim.powercut(d)


def wait_for(d, pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = sim.status(d)
        if pred(st):
            return st
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status {json.dumps(st)}\n{sim.log_tail(d)}")


@pytest.fixture
def app_device(tmp_path, keydir, bundles):
    """A running, provisioned device (own certificate and password) with v1 in slot A, and a
    logged-in API client for it."""
    d = tmp_path / "dev"
    info = sim.create(d, keydir, bundles["v1"], iterations=1000)
    sim.start(d)
    sim.wait_api(d)
    client = push.Device(sim.https_address(d), info["password"], ca=keydir / "ca.crt",
                         name=info["device_id"])
    yield d, client, info
    sim.powercut(d)
