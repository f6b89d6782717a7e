"""Anonymous telemetry (4.10-2) on the device runtime: two devices' records over two days at
the real period. No record names its device or carries a counter; times are whole hours; a
device's pseudonym holds for one day and never comes back; nothing in a record links one
device's days; only the holder of a device's factory secret can compute its pseudonyms."""

import hashlib
import hmac
import json
from collections import defaultdict

from host_tools import mpy

SCRIPT = mpy.REPO / "tests" / "device" / "telemetry_anon.py"
SECRETS = (bytes(range(32)), bytes(range(7, 39)))


def _pseudonym(secret, day):
    key = hmac.new(secret, b"iot-secure-firmware/telemetry/day", hashlib.sha256).digest()
    return hmac.new(key, b"day:%d" % day, hashlib.sha256).digest()[:8].hex()


def test_two_devices_two_days_cannot_be_linked(tmp_path):
    proc = mpy.run(SCRIPT, [tmp_path], extra_path=[mpy.REPO / "firmware"])
    assert proc.returncode == 0 and "TELEMETRY-OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(recs) == 2 * 2 * 288
    by_day = defaultdict(lambda: defaultdict(set))  # day -> pseudonym -> devices
    for r in recs:
        doc = r["doc"]
        assert set(doc) == {"p", "t", "temperature", "target", "heating"}
        assert r["topic"] == "telemetry/iot-thermostat/" + doc["p"] and len(doc["p"]) == 16
        assert doc["t"] % 3600 == 0  # hour-coarse: the device's timer phase is not visible
        by_day[doc["t"] // 86400][doc["p"]].add(r["dev"])
        # the maker, holding the factory secret, finds the device; the service cannot
        assert doc["p"] == _pseudonym(SECRETS[r["dev"]], doc["t"] // 86400)
    days = sorted(by_day)
    assert len(days) == 2
    for day in days:  # per day: one pseudonym per device, never shared
        assert sorted(len(devs) for devs in by_day[day].values()) == [1, 1]
    assert not set(by_day[days[0]]) & set(by_day[days[1]])  # a new pseudonym every day
    # No field but the readings varies within a device's day, and none is constant across its
    # days apart from values every device shares: nothing links day 1 to day 2.
    for dev in (0, 1):
        stable = None
        for day in days:
            vals = {(k, json.dumps(v)) for r in recs if r["dev"] == dev and
                    r["doc"]["t"] // 86400 == day for k, v in r["doc"].items()
                    if k not in ("temperature", "heating", "t")}
            stable = vals if stable is None else stable & vals
        others = {(k, json.dumps(v)) for r in recs if r["dev"] != dev
                  for k, v in r["doc"].items()}
        assert stable <= others, stable - others  # only e.g. the target every device has
