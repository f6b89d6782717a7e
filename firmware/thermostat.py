# The product's basic function: a thermostat control loop that never waits on the network.
# Hysteresis control of the heater relay around a set point, a local daily schedule, settings
# persisted on the data filesystem so they survive power cuts and updates.
import asyncio
import time

from micropython import const

import store

TICK_MS = const(250)
SETPOINT_MIN = 5.0  # the product's range; the sensor reads -40..85 C but no room wants that
SETPOINT_MAX = 30.0
MAX_SCHEDULE = const(8)
DEFAULTS = {"mode": "heat", "setpoint": 20.0, "hysteresis": 0.5, "schedule": [],
            "utc_offset_min": 0}


def _num(v, lo, hi, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("%s must be a number" % what)
    if not lo <= v <= hi:
        raise ValueError("%s must be between %s and %s" % (what, lo, hi))
    return float(v)


def _minutes(text):
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":" \
            or not (text[:2] + text[3:]).isdigit():
        raise ValueError("schedule time must be HH:MM")
    h, m = int(text[:2]), int(text[3:])
    if h > 23 or m > 59:
        raise ValueError("schedule time must be HH:MM between 00:00 and 23:59")
    return h * 60 + m


def validate(patch, current):
    """Return new settings from `current` and a partial `patch`, or raise ValueError saying
    exactly what is wrong. Nothing is applied unless every field is valid."""
    if not isinstance(patch, dict) or not patch:
        raise ValueError("send a JSON object with at least one setting")
    new = dict(current)
    for key, v in patch.items():
        if key == "mode":
            if v not in ("heat", "off"):
                raise ValueError("mode must be 'heat' or 'off'")
            new[key] = v
        elif key == "setpoint":
            new[key] = _num(v, SETPOINT_MIN, SETPOINT_MAX, "setpoint")
        elif key == "hysteresis":
            new[key] = _num(v, 0.1, 3.0, "hysteresis")
        elif key == "utc_offset_min":
            if isinstance(v, bool) or not isinstance(v, int) or not -720 <= v <= 840:
                raise ValueError("utc_offset_min must be an integer between -720 and 840")
            new[key] = v
        elif key == "schedule":
            if not isinstance(v, list) or len(v) > MAX_SCHEDULE:
                raise ValueError("schedule must be a list of at most %d entries" % MAX_SCHEDULE)
            entries = []
            seen = set()
            for e in v:
                if not isinstance(e, dict) or sorted(e.keys()) != ["at", "setpoint"]:
                    raise ValueError("schedule entries are {\"at\": \"HH:MM\", \"setpoint\": C}")
                at = _minutes(e["at"])
                if at in seen:
                    raise ValueError("two schedule entries at %s" % e["at"])
                seen.add(at)
                entries.append({"at": e["at"], "setpoint": _num(e["setpoint"], SETPOINT_MIN,
                                                                SETPOINT_MAX, "schedule setpoint")})
            entries.sort(key=lambda e: e["at"])
            new[key] = entries
        else:
            raise ValueError("unknown setting %r" % (key,))
    return new


class Thermostat:
    """The control task and its settings. `path` is the settings record on the data fs."""

    def __init__(self, hal, path=None, clock=time.time):
        self.hal = hal
        self.path = path
        self.clock = clock
        saved, status = store.load_record(path) if path else (None, store.MISSING)
        # A record written but unreadable: defaults apply, and the owner is told (state()).
        self.notice = "saved settings were unreadable; defaults apply" \
            if status == store.LOST else None
        try:
            self.settings = validate(saved, DEFAULTS) if saved else dict(DEFAULTS)
        except ValueError:
            self.settings = dict(DEFAULTS)  # a damaged record must not stop the heating
        self.heating = False
        self.ticks = 0
        self.last_tick = None
        self.max_gap_ms = 0
        self.temperature = None
        self.sensor_error = None
        self.listeners = []  # fn(old, new) after every accepted change (privacy's history)

    def update(self, patch):
        """Validate and apply a settings change; persisted before it takes effect."""
        old = self.settings
        new = validate(patch, old)
        if self.path:
            store.save_record(self.path, new)
        self.settings = new
        self.notice = None
        for fn in self.listeners:
            fn(old, new)
        return new

    def target(self):
        """The set point in force now: the latest schedule entry today, else the manual one."""
        s = self.settings
        if s["mode"] == "off":
            return None
        sched = s["schedule"]
        if not sched:
            return s["setpoint"]
        t = time.gmtime(int(self.clock()) + s["utc_offset_min"] * 60)
        now = t[3] * 60 + t[4]
        current = sched[-1]  # before the first entry of the day, yesterday's last one holds
        for e in sched:
            if _minutes(e["at"]) <= now:
                current = e
        return current["setpoint"]

    def step(self):
        try:
            t = self.hal.sensor.read()
            self.sensor_error = None
        except OSError as e:  # sensor gone or garbled: fail safe (heater off), keep ticking
            t = None
            self.sensor_error = str(e)
        self.temperature = t
        target = self.target()
        hyst = self.settings["hysteresis"]
        if target is None or t is None:
            self.heating = False
        elif t < target - hyst:
            self.heating = True
        elif t > target + hyst:
            self.heating = False
        self.hal.relay.value(self.heating)
        now = time.ticks_ms()
        if self.last_tick is not None:
            gap = time.ticks_diff(now, self.last_tick)
            if gap > self.max_gap_ms:
                self.max_gap_ms = gap
        self.ticks += 1
        self.last_tick = now

    def reset_gap(self):
        """Start a new window for max_gap_ms (the largest time between two ticks)."""
        self.max_gap_ms = 0

    def window_gap_ms(self):
        """The longest time without a tick since reset_gap(), the wait for the next tick so
        far included: a window shorter than one tick still reports the time it held control."""
        if self.last_tick is None:
            return self.max_gap_ms
        return max(self.max_gap_ms, time.ticks_diff(time.ticks_ms(), self.last_tick))

    def state(self):
        st = {"temperature": self.temperature, "target": self.target(),
              "heating": self.heating, "sensor_error": self.sensor_error,
              "ticks": self.ticks, "tick_ms": TICK_MS,
              "max_gap_ms": self.max_gap_ms, "settings": self.settings}
        if self.notice:
            st["notice"] = self.notice
        return st

    async def run(self):
        while True:
            self.step()
            await asyncio.sleep_ms(TICK_MS)
