# Device side of test_hal_interface: every board's HAL against the declared interface
# (bootloader/halspec.py). The ESP32 HALs run with the fake machine/network/esp32 (tests/fakes).
# Also: the checker itself refuses a HAL that lacks a component, a method, an optional
# feature's declared attribute, or a member of a component.
# Usage: micropython hal_interface.py BOARD (BOARD_JSON | RUN_DIR)
import json
import sys

import halspec

board, where = sys.argv[1], sys.argv[2]
if board == "unix":
    import hal

    h = hal.Hal(where)
    assert h.network is None  # no "radio" in sim.json: the host's network, declared absent
else:
    import machine

    import hal

    machine.clear()
    with open(where) as f:
        h = hal.Hal(json.load(f), log=lambda m: None)
problems = halspec.check(h)
assert problems == [], problems
for name in halspec.OPTIONAL:  # declared on the object, whatever its value
    assert name in dir(h) or name in dir(type(h)), name
if board != "unix":
    assert h.network is not None and h.network.WLAN  # the radio, imported on first use


# --- The checker fails what it must. ---
class Bare(halspec.Hal):
    pass


got = halspec.check(Bare())
for want in ("no led", "no relay", "no sensor", "no button", "no flash", "no method reset()",
             "no method report()", "no method services()", "no method unique_id()"):
    assert want in got, (want, got)
assert "does not derive from halspec.Hal" in halspec.check(object())


class NoPattern:
    def value(self, on=None):
        return 0


b = Bare()
b.led = NoPattern()
b.https_port = "443"
b.network = object()
got = halspec.check(b)
assert "led has no pattern" in got and "led has no on" in got, got
assert "https_port is '443', not a int" in got, got
assert "network is neither None nor a radio (no WLAN)" in got, got
print("OK")
