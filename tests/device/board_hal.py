# Device side of test_boards: an ESP32 board's HAL on the unix port with the fake `machine`
# (tests/fakes). Import touches no hardware; the pins come from board.json; exact I2C bytes
# of the SHT3x; a clear error when the sensor is absent or garbled; relay, LED (GPIO or
# WS2812) with its timer-driven pattern, button, unique_id, reset; Wi-Fi in the background.
# Usage: micropython board_hal.py BOARD BOARD_JSON
import json
import sys

import machine

board, cfg_path = sys.argv[1], sys.argv[2]
machine.clear()
import hal  # noqa: E402  (the board's HAL: importing it must not touch the hardware)

assert machine.log == [], machine.log
with open(cfg_path) as f:
    cfg = json.load(f)
pins = cfg["pins"]
lines = []
h = hal.Hal(cfg, log=lines.append)
log = machine.log


def calls(kind):
    return [c for c in log if c[0] == kind]


# --- Construction: every pin from board.json, nothing else touched. ---
created = {c[1]: c for c in calls("Pin")}
assert created[pins["relay"]][2:] == (machine.Pin.OUT, -1, 0), created
assert created[pins["button"]][2:4] == (machine.Pin.IN, machine.Pin.PULL_UP)
assert created[pins["led"]][2] == machine.Pin.OUT
assert calls("I2C") == [("I2C", 0, pins["sensor_scl"], pins["sensor_sda"], 100000)]
assert not calls("i2c.write") and not calls("reset") and h._flash is None
try:
    hal.Hal(dict(cfg, board="other"))
    raise AssertionError("a HAL must refuse another board's board.json")
except ValueError as e:
    assert board in str(e)

# --- Sensor: exact bus traffic, conversion, and clear errors. ---
sht = machine.Sht3xModel(21.5)
machine.attach(0x44, sht)
del log[:]
assert h.sensor.read() == 21.5
assert log == [("i2c.write", 0x44, b"\x24\x00"), ("i2c.read", 0x44, 6)], log
for t in (-40.0, 0.0, 18.25, 85.0):
    sht.temp_c = t
    assert abs(h.sensor.read() - t) < 0.01, (t, h.sensor.read())
assert h.sensor.present()
sht.corrupt = True
try:
    h.sensor.read()
    raise AssertionError("a corrupted reading must raise")
except hal.SensorError as e:
    assert "CRC" in str(e)
machine.detach(0x44)
try:
    h.sensor.read()
    raise AssertionError("an absent sensor must raise")
except hal.SensorError as e:
    msg = str(e)
    assert "no SHT3x" in msg and "0x44" in msg, msg
    assert "SDA GPIO%d, SCL GPIO%d" % (pins["sensor_sda"], pins["sensor_scl"]) in msg, msg
assert isinstance(hal.SensorError("x"), OSError)  # callers that catch OSError keep running
assert not h.sensor.present()

# --- Relay: levels and switch count. ---
del log[:]
h.relay.on()
h.relay.on()
h.relay.value(0)
assert log == [("pin", pins["relay"], 1), ("pin", pins["relay"], 0)], log
assert h.relay.switches == 2 and h.relay.value() == 0

# --- LED: steady, then the alert pattern driven by a one-shot timer. ---
ws = cfg["led"] == "ws2812"


def led_out():
    if ws:
        return [c[4] for c in log if c[0] == "bitstream"]
    return [c[2] for c in log if c[0] == "pin" and c[1] == pins["led"]]


del log[:]
h.led.on()
assert h.led.value() == 1
h.led.off()
if ws:
    assert calls("bitstream")[0][1:4] == (pins["led"], 0, (400, 850, 800, 450))
    assert led_out() == [b"\x18\x18\x18", b"\x00\x00\x00"], led_out()  # G, R, B
else:
    assert led_out() == [1, 0], led_out()
del log[:]
h.led.pattern("alert")
timer = h.led._timer
periods = [timer.period]
states = [h.led.value()]
for _ in range(6):
    timer.fire()
    periods.append(timer.period)
    states.append(h.led.value())
assert periods == [100, 100, 100, 100, 100, 700, 100], periods
assert states == [1, 0, 1, 0, 1, 0, 1], states
assert h.led.pattern_name == "alert" and list(h.led.timings) == [100, 100, 100, 100, 100, 700]
if ws:
    assert led_out()[0] == b"\x00\x40\x00", led_out()  # red while alerting
h.led.value(0)
assert ("timer.deinit", timer.id) in log and h.led.pattern_name is None

# --- Button (active low), identity, reset. ---
assert not h.button.pressed()
machine.inputs[pins["button"]] = 0
assert h.button.pressed()
assert h.unique_id() == machine.UNIQUE_ID
try:
    h.reset()
    raise AssertionError("reset returned")
except machine.ResetCalled:
    pass


# --- Wi-Fi: not configured is logged; configured connects in the background. ---
class Boot:
    slot, version, trial = "a", "1.0.0", False


import asyncio  # noqa: E402
import network  # noqa: E402

asyncio.run(h.services(Boot())[0])
assert lines[-1].startswith("wifi: not configured"), lines
tmp = "/tmp/board_hal_wifi_%s.json" % board
with open(tmp, "w") as f:
    f.write(json.dumps({"ssid": "lab", "password": "pw"}))
h.wifi.path = tmp
ident = "/tmp/board_hal_identity_%s.json" % board
with open(ident, "w") as f:
    f.write(json.dumps({"device_id": "th-4k9q2x7mzp3a"}))
h.wifi.identity = ident


async def wifi_briefly():
    task = asyncio.create_task(h.wifi.run())
    for _ in range(40):
        await asyncio.sleep_ms(50)
        if h.wifi.address:
            break
    task.cancel()


asyncio.run(wifi_briefly())
assert h.wifi.address == "192.168.4.20", lines
assert ("connect", "lab") in network.log and "wifi: connected to lab, address 192.168.4.20" in lines
# The board answers to <device id>.local (DHCP and mDNS): named before the interface is up.
assert network.log.index(("hostname", "th-4k9q2x7mzp3a")) < network.log.index(("active", True))
h.report(Boot(), "normal")
assert lines[-1] == "board: mode normal, slot a, version 1.0.0", lines
print("OK")
