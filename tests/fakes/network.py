# A fake `network` for the unix port: a station interface that associates after
# settings["polls_to_connect"] calls of isconnected(), and records what it was asked.
STA_IF = 0
log = []
settings = {"address": "192.168.4.20", "polls_to_connect": 2}


def hostname(name=None):
    """network.hostname(): the name DHCP and the mDNS responder use (at most 32 bytes)."""
    if name is None:
        return settings.get("hostname", "espressif")
    if not 0 < len(name) <= 32:
        raise ValueError("hostname length")
    log.append(("hostname", name))
    settings["hostname"] = name


class WLAN:
    def __init__(self, interface):
        self._active = False
        self._connected = False
        self._polls = None
        log.append(("WLAN", interface))

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
            log.append(("active", self._active))
        return self._active

    def connect(self, ssid, password):
        log.append(("connect", ssid))
        self._polls = settings["polls_to_connect"]

    def isconnected(self):
        if self._polls is not None and not self._connected:
            self._polls -= 1
            self._connected = self._polls <= 0
        return self._connected

    def ifconfig(self):
        return (settings["address"], "255.255.255.0", "192.168.4.1", "192.168.4.1")
