# The thermostat's control logic under the unix port with a scripted sensor: hysteresis,
# schedule, validation, persistence and failing safe when the sensor fails.
import sys

sys.path.insert(0, sys.argv[1])  # firmware/
import thermostat  # noqa: E402
from thermostat import Thermostat  # noqa: E402


class Sensor:
    def __init__(self):
        self.value = 20.0

    def read(self):
        if self.value is None:
            raise OSError("no sensor at 0x44")
        return self.value


class Relay:
    def __init__(self):
        self.on = None

    def value(self, v=None):
        self.on = bool(v)


class Hal:
    def __init__(self):
        self.sensor = Sensor()
        self.relay = Relay()


hal = Hal()
path = sys.argv[2] + "/settings.json"
clock = [0]
t = Thermostat(hal, path, clock=lambda: clock[0])
# hysteresis around 20.0 +- 0.5
for temp, heating in ((19.6, False), (19.4, True), (20.4, True), (20.6, False), (19.6, False)):
    hal.sensor.value = temp
    t.step()
    assert t.heating is heating and hal.relay.on is heating, (temp, t.heating)
# a failing sensor turns the heater off and the loop keeps ticking
hal.sensor.value = 18.0
t.step()
assert t.heating
ticks = t.ticks
hal.sensor.value = None
t.step()
assert t.heating is False and hal.relay.on is False and t.ticks == ticks + 1
assert "0x44" in t.state()["sensor_error"]
hal.sensor.value = 18.0
t.step()
assert t.heating and t.state()["sensor_error"] is None
# the schedule picks the latest entry of the day, wrapping to yesterday's last one
t.update({"schedule": [{"at": "22:00", "setpoint": 16}, {"at": "06:30", "setpoint": 21}]})
assert [e["at"] for e in t.settings["schedule"]] == ["06:30", "22:00"]
for hhmm, want in (("05:00", 16.0), ("06:30", 21.0), ("12:00", 21.0), ("23:59", 16.0)):
    clock[0] = int(hhmm[:2]) * 3600 + int(hhmm[3:]) * 60
    assert t.target() == want, (hhmm, t.target())
t.update({"utc_offset_min": 120})  # 05:00 UTC is 07:00 local
clock[0] = 5 * 3600
assert t.target() == 21.0
t.update({"mode": "off"})
hal.sensor.value = 5.0
t.step()
assert t.target() is None and t.heating is False
# validation: every bad field is refused and nothing changes
before = dict(t.settings)
for bad in ({"setpoint": 4.9}, {"setpoint": 30.1}, {"setpoint": True}, {"setpoint": "20"},
            {"mode": "cool"}, {"hysteresis": 0}, {"utc_offset_min": 900},
            {"utc_offset_min": 1.5}, {"schedule": [{"at": "24:00", "setpoint": 20}]},
            {"schedule": [{"at": "7:00", "setpoint": 20}]},
            {"schedule": [{"at": "07:00", "setpoint": 20}, {"at": "07:00", "setpoint": 21}]},
            {"schedule": [{"at": "07:00"}]}, {"schedule": [{}] * 9}, {"colour": "red"}, {}, [],
            {"setpoint": 21, "mode": "bogus"}):
    try:
        t.update(bad)
    except ValueError as e:
        assert str(e), bad
    else:
        raise AssertionError("accepted %r" % (bad,))
    assert t.settings == before, bad
# settings survive a restart; one damaged copy costs nothing; both damaged fall back to
# defaults without stopping, and the owner is told (state()["notice"])
t2 = Thermostat(hal, path, clock=lambda: clock[0])
assert t2.settings == t.settings and "notice" not in t2.state()
copy2 = sys.argv[2] + ".1/settings.json"
for p in (path, copy2):
    with open(p, "w") as f:
        f.write("{not json")
    t3 = Thermostat(hal, path)
    if p == path:
        assert t3.settings == t.settings and t3.notice is None
assert t3.settings == thermostat.DEFAULTS and "unreadable" in t3.state()["notice"]
print("THERMOSTAT-OK")
