# Device side of test_boards' onboarding test: firmware/setupap.py on an ESP32 board's HAL with
# the fake `machine` and `network` (tests/fakes), on the unix port. Settings written over the
# console move into the sealed record and the station connects, with no access point; a new
# device opens the WPA2 set-up AP with the label's passphrase for one client, listens on the
# AP's address for the window only, and the button held 3 s opens it again.
# Usage: micropython board_onboarding.py BOARD_JSON WORK PORT CERT_DER KEY_DER
import asyncio
import json
import os
import socket
import ssl
import sys

import machine

machine.clear()
import hal  # noqa: E402
import network  # noqa: E402
import sealed  # noqa: E402
import setupap  # noqa: E402
import store  # noqa: E402

cfg_path, work, port, crt, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], \
    sys.argv[5]
with open(cfg_path) as f:
    cfg = json.load(f)
lines = []
h = hal.Hal(cfg, log=lines.append)
assert len(h.services(None)) == 1  # the board's own Wi-Fi task, until the app takes the radio
assert h.network is network and h.setup_port == 443 and h.setup_window_s == 600
assert h.services(None) == []
DEV_ID = "th-4k9q2x7mzp3a"
secret = bytes(range(32))
for d in ("/data", "/data/app", "/factory"):
    os.mkdir(work + d)
with open(work + "/factory/secret.bin", "wb") as f:
    f.write(secret)
store.use(sealed.from_factory(work + "/factory", work + "/data"))


class Dev:
    hal = h
    data = work + "/data"
    factory = work + "/factory"
    identity = {"device_id": DEV_ID}

    def log(self, msg):
        lines.append(msg)

    def tls_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with open(crt, "rb") as c, open(key, "rb") as k:
            ctx.load_cert_chain(c.read(), k.read())
        return ctx


def listening():
    s = socket.socket()
    try:
        s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        return True
    except OSError:
        return False
    finally:
        s.close()


async def run_for(ms, during=None):
    ob = setupap.Onboarding(Dev())
    task = asyncio.create_task(ob.run())
    if during:
        await during(ob)
    else:
        await asyncio.sleep_ms(ms)
    task.cancel()
    await asyncio.sleep_ms(0)
    return ob


# --- Settings from the console: sealed, the plaintext gone; the station connects; no AP. ---
with open(work + "/data/wifi.json", "w") as f:
    f.write(json.dumps({"ssid": "lab", "password": "lab-password-1"}))
asyncio.run(run_for(1500))
assert "wifi.json" not in os.listdir(work + "/data"), os.listdir(work + "/data")
with open(work + "/data/app/wifi.json", "rb") as f:
    raw = f.read()
assert raw[:3] == sealed.MAGIC and b"lab-password" not in raw
assert store.load(work + "/data/app/wifi.json") == {"ssid": "lab", "password": "lab-password-1"}
assert ("connect", "lab") in network.log and "wifi: connected to lab, address 192.168.4.20" in \
    lines, lines
assert network.log.index(("hostname", DEV_ID)) < network.log.index(("active", True))
assert not [e for e in network.log if e[0] in ("config", "ap_active")], network.log

# --- A new device: the WPA2 set-up AP, the label's passphrase, one client, the window. ---
os.remove(work + "/data/app/wifi.json")
del network.log[:]
h.setup_port, h.setup_window_s = port, 1
seen = []


async def window(ob):
    for _ in range(30):
        await asyncio.sleep_ms(100)
        seen.append(listening())
    assert ob.server is None


asyncio.run(run_for(0, window))
conf = [e[1] for e in network.log if e[0] == "config"]
assert conf == [{"ssid": "setup-" + DEV_ID, "key": sealed.ap_passphrase(secret),
                 "security": network.AUTH_WPA2_PSK, "max_clients": 1}], conf
assert [e for e in network.log if e[0] == "ap_active"] == [("ap_active", True),
                                                           ("ap_active", False)]
assert seen[0] and not seen[-1], seen  # listening on the AP's address in the window only
assert "setup: access point setup-%s open for 1 s (no Wi-Fi settings)" % DEV_ID in lines
assert "setup: access point closed (set-up window ended)" in lines

# --- With settings, only the button opens it: held 3 s. ---
store.save(work + "/data/app/wifi.json", {"ssid": "lab", "password": "lab-password-1"})
del network.log[:]
pin = cfg["pins"]["button"]


async def button(ob):
    await asyncio.sleep_ms(600)
    assert ob.server is None and not listening()
    machine.inputs[pin] = 1 if cfg.get("button_active_low", True) else 0  # released
    await asyncio.sleep_ms(400)
    machine.inputs[pin] = 0 if cfg.get("button_active_low", True) else 1  # pressed
    for _ in range(40):
        await asyncio.sleep_ms(100)
        if ob.server is not None:
            break
    assert ob.server is not None and listening()


asyncio.run(run_for(0, button))
assert "setup: access point setup-%s open for 1 s (button held 3 s)" % DEV_ID in lines, lines
print("OK")
