# A fake `network` for the unix port, with the ESP32 port's API: a station interface that
# associates after settings["polls_to_connect"] polls, an access point (AP_IF) that records
# its config, and a log of what it was asked.
STA_IF = 0
AP_IF = 1
AUTH_OPEN = 0
AUTH_WPA2_PSK = 3
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
log = []
settings = {"address": "192.168.4.20", "polls_to_connect": 2, "ap_address": "127.0.0.1"}
_ap = {}  # the access point's config: one radio, whichever WLAN(AP_IF) object sets it


def hostname(name=None):
    """network.hostname(): the name DHCP and the mDNS responder use (at most 32 bytes)."""
    if name is None:
        return settings.get("hostname", "espressif")
    if not 0 < len(name) <= 32:
        raise ValueError("hostname length")
    log.append(("hostname", name))
    settings["hostname"] = name


class WLAN:
    def __init__(self, interface=STA_IF):
        self._if = interface
        self._active = False
        self._connected = False
        self._polls = None
        log.append(("WLAN", interface))

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
            log.append(("active", self._active) if self._if == STA_IF else
                       ("ap_active", self._active))
        return self._active

    def config(self, *names, **kw):
        if names:
            return _ap[names[0]]
        if kw.get("security") == AUTH_WPA2_PSK and not 8 <= len(kw.get("key", "")) <= 63:
            raise ValueError("WPA2 passphrase must be 8 to 63 characters")
        _ap.update(kw)
        log.append(("config", dict(kw)))

    def connect(self, ssid, password):
        log.append(("connect", ssid))
        self._polls = settings["polls_to_connect"]

    def disconnect(self):
        self._connected, self._polls = False, None
        log.append(("disconnect",))

    def isconnected(self):
        if self._polls is not None and not self._connected:
            self._polls -= 1
            self._connected = self._polls <= 0
        return self._connected

    def status(self, param=None):
        if param == "stations":
            return []
        if self.isconnected():
            return STAT_GOT_IP
        return STAT_CONNECTING if self._polls is not None else STAT_IDLE

    def ifconfig(self):
        if self._if == AP_IF:
            return (settings["ap_address"], "255.255.255.0", settings["ap_address"], "0.0.0.0")
        return (settings["address"], "255.255.255.0", "192.168.4.1", "192.168.4.1")
