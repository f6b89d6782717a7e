# Device side of test_flash: the simulated hardware. Room model (heats with the relay on,
# cools towards outside, deterministic, independent of sampling), relay counting, LED
# status for the host, button file, unique_id, flash, real-clock speed factor.
# Usage: micropython hal_sim.py RUN_DIR OTHER_RUN_DIR   (RUN_DIR holds flash.bin, sim.json)
import json
import sys
import time

import hal

run_dir, other_dir = sys.argv[1], sys.argv[2]


class Clock:
    def __init__(self):
        self.ms = 1000

    def __call__(self):
        return self.ms


def close(a, b, eps=1e-6):
    return abs(a - b) < eps


def simulate(steps, step_ms):
    clock = Clock()
    # One real minute is one simulated hour.
    room = hal.Room(clock, speed=60, outside_c=5.0, start_c=18.0, heater_rise_k=25.0,
                    tau_s=3600.0)
    relay = hal.Relay(room, lambda: None)
    temps = []
    for on in (1, 0):
        relay.value(on)
        for _ in range(steps):
            clock.ms += step_ms
            temps.append(room.temperature())
    return room, relay, temps


# Relay on heats towards outside + rise, off cools towards outside; nothing overshoots.
room, relay, temps = simulate(60, 1000)  # 1 h on, 1 h off, sampled every simulated minute
heat, cool = temps[:60], temps[60:]
assert all(b > a for a, b in zip(heat, heat[1:])), "heating must rise"
assert all(b < a for a, b in zip(cool, cool[1:])), "cooling must fall"
assert heat[-1] < room.outside_c + room.heater_rise_k and cool[-1] > room.outside_c
# Exact first-order response: after one time constant 63.2 % of the way to the target.
target = 5.0 + 25.0
assert close(heat[-1], target + (18.0 - target) * 2.718281828459045 ** -1, 1e-9), heat[-1]
assert close(room.sim_s, 7200.0)
assert relay.switches == 2 and relay.value() == 0  # off->on, on->off
# Deterministic, and independent of how often the model is sampled.
_, _, again = simulate(60, 1000)
assert again == temps
_, _, coarse = simulate(4, 15000)
assert close(coarse[3], temps[59]) and close(coarse[7], temps[119])
# Switching to the state it is already in is not a switching.
relay.off()
relay.off()
assert relay.switches == 2
# The sensor has a 1/16 degree resolution.
r = hal.TempSensor(room).read()
assert r * 16 == int(r * 16) and abs(r - room.temperature()) <= 1 / 32

# Real clock: speed 36000 makes 50 ms of real time 30 simulated minutes.
h = hal.Hal(run_dir, speed=36000)
t0 = h.sim_seconds()
time.sleep_ms(50)
dt = h.sim_seconds() - t0
assert 1700 < dt < 3000, dt
# sim.json gives the defaults: speed, outside, start, unique id.
h = hal.Hal(run_dir)
assert h.room.speed == 120 and h.room.outside_c == -2.0 and h.room.temp_c == 21.5
assert h.unique_id() == bytes.fromhex("a4cf12345678")
uid = hal.Hal(other_dir).unique_id()  # no sim.json: derived from the run directory
assert len(uid) == 6 and uid == hal.Hal(other_dir + "/").unique_id() and uid != h.unique_id()

# LED: steady states and a named pattern, each change in memory and in status.json.
h.led.on()
h.led.pattern("alert", (100, 100, 100, 700))
with open(run_dir + "/status.json") as f:
    st = json.load(f)
assert st["led"] == {"on": True, "pattern": "alert", "timings": [100, 100, 100, 700],
                     "changes": 2}
assert [s for _, s in h.led.history] == ["on", "alert"]
h.relay.on()
with open(run_dir + "/status.json") as f:
    st = json.load(f)
assert st["relay"] == {"on": True, "switches": 1} and st["led"]["pattern"] == "alert"
for _ in range(40):
    h.led.off()
assert len(h.led.history) == 32 and h.led.changes == 42  # bounded history
h.led.pattern("alert")  # named default timings
assert h.led.timings == list(hal.PATTERNS["alert"]) and h.led.value() == 1
h.led.pattern(None)
assert h.led.value() == 0 and h.led.pattern_name is None

# Button: the host presses by creating the file.
assert not h.button.pressed()
h.button.press()
assert h.button.pressed()
h.button.release()
assert not h.button.pressed()

# The flash is the run directory's image, opened on first use.
assert h.flash.size == 16777216 and h.flash is h.flash
h.led.pattern("alert", (100, 100, 100, 700))  # left for the host to read
print("OK")
