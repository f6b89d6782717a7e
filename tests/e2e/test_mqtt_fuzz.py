"""Property-based fuzzing of the MQTT commands (ETSI TS 103 645 4.13): generated messages for
dev/<id>/cmd through the device's own handler (tests/device/mqtt_fuzz.py: firmware/cloud.py's
Cloud.command on the verified slot of a provisioned device with remote access allowed).
Properties: no crash, exactly one result event per message, saying whether it was applied; a
refused command changes nothing stored; an applied "set" stores exactly what it asked for; the
event echoes the command's id only when the id is well formed."""

import json
import os
import re
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools import sim
from tests.e2e.test_fuzz import SCALE, Harness, any_json, numbers, record_inputs, schedule

EXAMPLES = 100 * SCALE
DRAWN = 20  # 2,000 messages a run (`make fuzz` scales it)
_ID = re.compile(r"\A[A-Za-z0-9._-]{1,40}\Z")
FIELDS = {"set": {"cmd", "settings", "id"}, "check_update": {"cmd", "id"},
          "privacy_deleted": {"cmd", "request", "id"}}  # what an applied command may hold

ids = st.one_of(st.from_regex(_ID), st.text(max_size=45), st.integers(), st.none(),
                st.sampled_from(["", "a" * 40, "a" * 41, "x/y", "ü", "id 1"]))
settings_doc = st.one_of(
    st.fixed_dictionaries({}, optional={
        "mode": st.one_of(st.sampled_from(["heat", "off"]), any_json),
        "setpoint": numbers, "hysteresis": numbers,
        "utc_offset_min": st.one_of(st.integers(-900, 900), numbers), "schedule": schedule}),
    any_json)
command = st.fixed_dictionaries(
    {"cmd": st.one_of(st.sampled_from(["set", "check_update", "privacy_deleted"]),
                      st.text(max_size=12), any_json)},
    optional={"id": ids, "settings": settings_doc, "request": st.one_of(st.text(max_size=20),
                                                                        any_json),
              "extra": any_json})


@st.composite
def message(draw):
    kind = draw(st.integers(0, 10))
    if kind <= 6:
        return json.dumps(draw(command)).encode()
    if kind <= 8:  # valid commands, so that accepted ones are drawn too
        doc = {"cmd": "check_update"} if kind == 8 else {"cmd": "set", "settings": {
            "setpoint": draw(st.floats(5, 30).map(lambda x: round(x * 2) / 2))}}
        if draw(st.booleans()):
            doc["id"] = draw(st.from_regex(_ID))
        return json.dumps(doc).encode()
    if kind == 9:  # not JSON, or not an object, or deeply nested, or too long
        return draw(st.one_of(
            st.binary(max_size=300), st.text(max_size=100).map(str.encode),
            st.integers(1, 400).map(lambda n: b"[" * n + b"]" * n),
            st.integers(1, 200).map(lambda n: b'{"cmd":' * n + b"1" + b"}" * n),
            st.integers(1000, 1100).map(lambda n: b'{"cmd":"set","x":"' + b"a" * n + b'"}'),
            any_json.map(lambda d: json.dumps(d).encode())))
    raw = bytearray(json.dumps(draw(command)).encode())  # one byte changed
    raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
    return bytes(raw)



@pytest.fixture(scope="module")
def harness(tmp_path_factory, keydir, bundles):
    d = tmp_path_factory.mktemp("mqttfuzz") / "dev"
    sim.create(d, keydir, bundles["v1"], iterations=1000,
               cloud={"host": "127.0.0.1", "port": 8883})
    h = Harness("mqtt_fuzz.py", d)
    yield h
    h.close()


def _no_constant(name):
    raise ValueError(name)


def _expect_id(doc):
    cid = doc.get("id") if isinstance(doc, dict) else None
    return cid if isinstance(cid, str) and _ID.match(cid) else None


def test_fuzz_mqtt_commands(harness):
    outcomes = Counter()
    prev = [harness.first["settings"]]
    spent = [0.0]
    t0 = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              derandomize=bool(os.environ.get("CI")), suppress_health_check=list(HealthCheck))
    @given(st.lists(message(), min_size=DRAWN, max_size=DRAWN))
    def run(payloads):
        t = time.monotonic()
        results = harness.send(payloads)
        spent[0] += time.monotonic() - t
        for p, r in zip(payloads, results):
            what = f"{p[:200]!r} -> {r}"
            assert r["x"] is None, "crash: " + what
            assert len(r["ev"]) == 1, "not exactly one result event: " + what
            ev = r["ev"][0]
            assert ev["type"] == "cmd" and ev["ok"] is r["ok"], what
            try:  # as strict as the device: no NaN or Infinity, valid UTF-8
                doc = json.loads(p, parse_constant=_no_constant)
            except ValueError:
                doc = None
            if doc is not None and len(p) <= 1024 and isinstance(doc, dict):
                assert ev["id"] == _expect_id(doc), "id echo: " + what
            if r["ok"]:
                assert set(doc) <= FIELDS[doc["cmd"]] and _expect_id(doc) == doc.get("id"), what
                if doc["cmd"] == "set":  # stored exactly what was asked for
                    for k, v in doc["settings"].items():
                        assert r["s"][k] == v or (isinstance(v, (int, float)) and
                                                  r["s"][k] == float(v)), what
            else:
                assert ev["error"], what
                assert not r["c"], "a refused command changed stored state: " + what
                assert r["s"] == prev[0], "a refused command changed the settings: " + what
            prev[0] = r["s"]
            outcomes[(doc.get("cmd") if isinstance(doc, dict) and isinstance(
                doc.get("cmd"), str) and doc["cmd"] in ("set", "check_update") else "other",
                r["ok"])] += 1

    run()
    print(f"\nmqtt fuzz: {sum(outcomes.values())} commands in {time.monotonic() - t0:.1f} s "
          f"({spent[0]:.1f} s on the device): {dict(outcomes)}")
    record_inputs("mqtt_commands", sum(outcomes.values()))
    assert sum(outcomes.values()) >= EXAMPLES * DRAWN
    # The generators reach both sides of the validator.
    assert outcomes[("set", True)] > 50 and outcomes[("set", False)] > 200
    assert outcomes[("check_update", True)] > 5 and outcomes[("other", False)] > 500


def test_commands_are_rate_limited(harness):
    """More than 20 commands a minute are refused with the reason (a flood from a compromised
    service cannot keep the device busy)."""
    r = harness.send([b"RATE"])[0]
    assert r["refused_at"] == 21
    assert r["ev"][0]["ok"] is False and "commands a minute" in r["ev"][0]["error"]
