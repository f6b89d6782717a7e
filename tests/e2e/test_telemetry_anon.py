"""Anonymous telemetry at the broker (4.10-2): two simulated devices with consent, a "day"
shortened to 5 s through the factory record's cloud entry (like the other fast timings), and
everything the broker delivers on '#' captured as the service sees it. No telemetry record
names its device or carries a counter; each device's pseudonym changes every day and never
returns; only the maker's factory secret maps a pseudonym to a device. Remote access to the
owner's own device keeps working on its authenticated topics."""

import json
import time
from collections import defaultdict

from host_tools import sim

from .test_cloud import _pseudonym, _telemetry_key, broker, call, capture, consent, devices, \
    new_device  # noqa: F401  (fixtures)

DAY_S = 5


def test_a_day_of_telemetry_from_two_devices_cannot_be_linked(tmp_path, keydir, bundles, broker,
                                                              capture, devices):  # noqa: F811
    ds = [tmp_path / "a", tmp_path / "b"]
    devices.extend(ds)
    infos, clients = [], []
    for d in ds:
        info, dev = new_device(d, keydir, bundles["v1"], broker, telemetry_day_s=DAY_S)
        consent(dev, True)
        infos.append(info)
        clients.append(dev)
    ids = [i["device_id"] for i in infos]
    t_start = time.time()
    capture.wait(lambda t, m: len(capture.tel()) >= 2, what="telemetry")
    time.sleep(3 * DAY_S)  # two day boundaries at least
    # Remote access to one's own device: a read on its own topic answers on its own topic.
    capture.client.publish(f"dev/{ids[0]}/cmd", json.dumps({"cmd": "read", "id": "r9"}), qos=1)
    capture.wait(lambda t, m: t == f"dev/{ids[0]}/events" and m.get("id") == "r9", what="read")
    recs = capture.tel()
    raw = json.dumps(recs)
    for i in infos:  # nothing that names a device, its certificate, or counts its records
        for s in (i["device_id"], i["cert_serial"], i["cert_sha256"]):
            assert s not in raw
    assert all(set(m) == {"p", "t", "temperature", "target", "heating"} for _, m in recs)
    keys = [_telemetry_key(d) for d in ds]
    by_day = defaultdict(dict)  # day -> pseudonym -> device (known only with the secrets)
    for topic, m in recs:
        day = m["t"] // DAY_S
        owners = [n for n, k in enumerate(keys) if m["p"] == _pseudonym(k, day)]
        assert len(owners) == 1 and topic == "telemetry/iot-thermostat/" + m["p"], m
        assert by_day[day].setdefault(m["p"], owners[0]) == owners[0]
    days = sorted(by_day)
    # whole days, ended a few seconds ago (what a loaded device queued has arrived)
    full = [d for d in days if d * DAY_S >= t_start and (d + 1) * DAY_S <= time.time() - 4]
    assert len(days) >= 3 and full, days
    for day in full:  # every device, one pseudonym a day
        assert sorted(by_day[day].values()) == [0, 1], by_day[day]
    seen = set()
    for day in days:  # a pseudonym never comes back on another day
        assert not seen & set(by_day[day])
        seen |= set(by_day[day])
    assert not any(t.startswith(f"dev/{i}/telemetry") for i in ids for t, *_ in capture.msgs)
    assert call(clients[1], "GET", "/api/cloud")[1]["telemetry_outbox"]["dropped"] == 0
    assert sim.status(ds[0])["mode"] == "normal"
