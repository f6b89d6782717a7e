# Device side of test_board_alert: alert-only mode on a real board's power-on sequence
# (boards/common/esp32board.py), on the unix port with the fake `machine`, the fake `network`
# and the fake esp32.Partition over the simulated flash. The board was installed and the owner
# gave it their Wi-Fi (sealed under /data/app, as the onboarding stores it); then its app slot
# is tampered with. Power-on: alert-only mode brings up the station alone, sends the one alert
# to the broker of the factory record (a real mosquitto, started by the host), and takes the
# station down again. A second power-on into the same failure touches no radio at all.
# Usage: micropython board_alert.py WORK_IMAGE BOARD_JSON CASES.json
import json
import os
import sys

import esp32board
import fakepart
import machine
import network
import romslots
import sealed
import station
from fakepart import Partition
from hal import Hal

work, cfg_path, cases = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
with open(cfg_path) as f:
    CFG = json.load(f)
lines = []


class Stop(Exception):
    pass


class PowerCut:
    """The recovery channel of alert-only mode (none on a board), which also ends this
    power-on after `polls` turns of the mode's loop: the alert is tried first in each turn."""

    def __init__(self, polls=5):
        self.polls = polls

    def poll(self):
        self.polls -= 1
        if self.polls < 0:
            raise Stop()
        return None


def hal():
    return Hal(CFG, log=lines.append)


def power_on_main():
    fl, label = fakepart.power_on(work)
    assert label, fakepart.boot_log()
    machine.clear()
    del network.log[:]
    del lines[:]
    esp32board.NoRecovery = PowerCut
    try:
        esp32board.main(hal(), Partition, kbd_intr=lambda v: None)
    except Stop:
        pass


# --- The factory line and the owner: app 1.0.0 in slot A, Wi-Fi settings sealed. ---
fakepart.power_on(work)
assert esp32board.jig(hal(), Partition) == []
assert esp32board.install(cases["app"], True, hal(), Partition) == "1.0.0"
os.mkdir("/data/app")
rec = "/data" + station.SETTINGS
sealer = sealed.from_factory("/factory", "/data")
with open(rec, "wb") as f:
    f.write(sealer.seal(rec, json.dumps({"ssid": cases["ssid"], "password": cases["password"]})))
assert station.settings("/data", "/factory") == (cases["ssid"], cases["password"])

# --- Someone changes the app in flash: one byte of the ROMFS image in the `romfs` region. ---
part = Partition("romfs")
end = romslots.used(part, bytearray(romslots.HEADER_LEN))
assert end > romslots.SECTOR, end
sector = bytearray(romslots.SECTOR)
last = (end - 1) // romslots.SECTOR
part.readblocks(last, sector)
sector[(end - 1) % romslots.SECTOR] ^= 0x01
part.ioctl(6, last)
part.writeblocks(last, sector)

# --- Power-on: alert-only mode, the alert through the station, which goes down after. ---
power_on_main()
text = "\n".join(lines)
assert "ALERT-ONLY MODE" in text and "BAD_FILE_HASH" in text, text
sent = [x for x in lines if x.startswith("alert: integrity alert") and "delivered to" in x]
assert len(sent) == 1 and "127.0.0.1:%d" % cases["port"] in sent[0], lines
assert network.log == [("WLAN", network.STA_IF), ("active", True), ("connect", cases["ssid"]),
                       ("disconnect",), ("active", False)], network.log
print("ALERT " + sent[0].split()[3])

# --- Power-on again, same failure: no second alert, and the radio stays off. ---
power_on_main()
assert any("was delivered before; not sent again" in x for x in lines), lines
assert network.log == [], network.log

# --- The owner's Wi-Fi record tampered with: never used (it fails its MAC). ---
with open(rec, "r+b") as f:
    f.seek(20)
    b = f.read(1)
    f.seek(20)
    f.write(bytes((b[0] ^ 1,)))
assert station.settings("/data", "/factory") is None
print("OK")
