# Alert-only mode's way onto the network (ETSI 4.7-2): the Wi-Fi station alone, with the
# settings the app's onboarding stored (setupap.py: sealed with the device key under the data
# root), brought up for the one alert and taken down after it. No access point, no hostname
# service, nothing that listens. A board without a radio to manage (`hal.network` None: the
# simulator on the host's network) is simply online.
import json
import time

import sealed

SETTINGS = "/app/wifi.json"  # under the data root, sealed: {"ssid", "password"}
LEGACY = "/wifi.json"  # plaintext, written over the console at the factory (the app seals it)
_POLL_MS = 100


def _valid(conf):
    if isinstance(conf, dict) and isinstance(conf.get("ssid"), str) and conf["ssid"] \
            and isinstance(conf.get("password"), str):
        return conf["ssid"], conf["password"]
    return None


def settings(root, factory):
    """(ssid, password) the owner gave the device, or None: the sealed record, else the
    console-written plaintext file the app has not moved yet. A record that fails its MAC
    counts as none."""
    sealer = sealed.from_factory(factory, root) if factory else None
    path = root + SETTINGS
    try:
        if sealer is not None:
            return _valid(json.loads(sealer.read(path)))
        with open(path) as f:
            return _valid(json.loads(f.read()))
    except (OSError, ValueError):
        pass
    try:
        with open(root + LEGACY) as f:
            return _valid(json.loads(f.read()))
    except (OSError, ValueError):
        return None


class Uplink:
    """The station of alert-only mode, for the running Boot `boot`: up(timeout_ms) before the
    alert, down() after it, whatever happened."""

    def __init__(self, boot):
        self.boot = boot
        self._wlan = None

    def up(self, timeout_ms):
        """True once the station has an address (at once without a radio to manage)."""
        network = self.boot.hal.network
        if network is None:
            return True
        conf = settings(self.boot.root, self.boot.profile.get("factory"))
        if conf is None:
            self.boot.log("alert: no Wi-Fi settings on the device; the alert stays local")
            return False
        wlan = self._wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        wlan.connect(conf[0], conf[1])
        start = time.ticks_ms()
        while not wlan.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) >= timeout_ms:
                return False
            time.sleep_ms(_POLL_MS)
        return True

    def down(self):
        """The station off again (nothing to do when up() never turned it on)."""
        wlan, self._wlan = self._wlan, None
        if wlan is not None:
            try:
                wlan.disconnect()
            except OSError:
                pass
            wlan.active(False)
