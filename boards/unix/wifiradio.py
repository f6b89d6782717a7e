# The simulated board's Wi-Fi radio, with the ESP32 port's `network` API: WLAN(STA_IF) and
# WLAN(AP_IF) (one object per interface), config(ssid=, key=, security=, max_clients=),
# active, connect, disconnect, isconnected, status, ifconfig, and hostname(). The world
# around the device is the folder air/ of the device directory, written by the host:
#   air/networks.json   {"<ssid>": {"key": "<passphrase>", "address": "<ip>"}}: home networks
#                       in range (remove one and the station loses it, as when a router dies)
#   air/ap.json         written here while the access point is up: {"ssid", "security",
#                       "address", "clients"}; absent = no beacon, nothing to join
#   air/join-<n>.json   a phone asks to join: {"ssid", "key", "mac"}; answered in
#   air/join-<n>.reply  {"ok": true, "address"} or {"ok": false, "reason"}
#   air/sta.json        the station's state for the host: {"ssid", "status", "address"}
# Like the ESP32's driver, the radio does the WPA2 check and the client limit: the application
# only configures them. Joins are answered when the device polls the AP (status("stations")).
import json
import os

import files

STA_IF = 0
AP_IF = 1
AUTH_OPEN = 0
AUTH_WPA2_PSK = 3
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
AP_ADDRESS = "127.0.4.1"  # the AP interface: a loopback address of its own
_POLLS = 2  # isconnected()/status() calls an association takes


class _Sta:
    def __init__(self, radio):
        self._r = radio
        self._active = False
        self._ssid = None
        self._key = None
        self._status = STAT_IDLE
        self._polls = 0
        self._address = "0.0.0.0"

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
            if not on:
                self.disconnect()
        return self._active

    def connect(self, ssid, key=None):
        if not self._active:
            raise OSError("STA interface not active")
        self._ssid, self._key = ssid, key or ""
        self._status, self._polls = STAT_CONNECTING, _POLLS
        self._publish()

    def disconnect(self):
        self._ssid, self._status, self._address = None, STAT_IDLE, "0.0.0.0"
        self._publish()

    def _check(self):
        # The station looks at the air on every poll: a network that vanished is lost.
        if self._ssid is None:
            return
        net = self._r.networks().get(self._ssid)
        if self._status == STAT_CONNECTING:
            self._polls -= 1
            if self._polls > 0:
                return
            if net is None:
                self._status = STAT_NO_AP_FOUND
            elif net.get("key", "") != self._key:
                self._status = STAT_WRONG_PASSWORD
            else:
                self._status = STAT_GOT_IP
                self._address = net.get("address", "192.168.1.50")
            self._publish()
        elif self._status == STAT_GOT_IP and (net is None or net.get("key", "") != self._key):
            self._status, self._address = STAT_NO_AP_FOUND, "0.0.0.0"
            self._publish()

    def status(self, what=None):
        self._check()
        return self._status

    def isconnected(self):
        self._check()
        return self._status == STAT_GOT_IP

    def ifconfig(self):
        return (self._address, "255.255.255.0", "192.168.1.1", "192.168.1.1")

    def _publish(self):
        files.write_json(self._r.air + "/sta.json", {"ssid": self._ssid,
                                                     "status": self._status,
                                                     "address": self._address})


class _Ap:
    def __init__(self, radio):
        self._r = radio
        self._active = False
        self._cfg = {"ssid": "", "key": "", "security": AUTH_OPEN, "max_clients": 4}
        self._clients = []

    def config(self, *names, **kw):
        if names:
            return self._cfg[{"essid": "ssid", "password": "key",
                              "authmode": "security"}.get(names[0], names[0])]
        for k, v in kw.items():
            k = {"essid": "ssid", "password": "key", "authmode": "security"}.get(k, k)
            if k not in self._cfg:
                raise ValueError("unknown config param " + k)
            self._cfg[k] = v
        c = self._cfg
        if c["security"] == AUTH_WPA2_PSK and not 8 <= len(c["key"]) <= 63:
            raise ValueError("WPA2 passphrase must be 8 to 63 characters")
        if not 0 < len(c["ssid"]) <= 32:
            raise ValueError("SSID must be 1 to 32 bytes")

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
            self._clients = []
            if self._active:
                self._publish()
            else:
                files.remove(self._r.air + "/ap.json")
        return self._active

    def ifconfig(self):
        return (AP_ADDRESS, "255.255.255.0", AP_ADDRESS, "0.0.0.0")

    def status(self, what=None):
        if what != "stations":
            raise ValueError("unknown status param")
        if self._active:
            self._answer_joins()
        return [(mac,) for mac in self._clients]

    def _answer_joins(self):
        c = self._cfg
        for name in sorted(os.listdir(self._r.air)):
            if not (name.startswith("join-") and name.endswith(".json")):
                continue
            path = self._r.air + "/" + name
            try:
                with open(path) as f:
                    req = json.loads(f.read())
                ssid, key, mac = req["ssid"], req.get("key", ""), req["mac"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # still being written, or garbage: the host rewrites it
            if ssid != c["ssid"]:
                reply = {"ok": False, "reason": "no such network"}
            elif c["security"] != AUTH_OPEN and key != c["key"]:
                reply = {"ok": False, "reason": "wrong passphrase"}  # the 4-way handshake fails
            elif mac not in self._clients and len(self._clients) >= c["max_clients"]:
                reply = {"ok": False, "reason": "access point full"}
            else:
                if mac not in self._clients:
                    self._clients.append(mac)
                reply = {"ok": True, "address": AP_ADDRESS}
            files.write_json(path[:-5] + ".reply", reply)
            files.remove(path)
            self._publish()

    def _publish(self):
        c = self._cfg
        files.write_json(self._r.air + "/ap.json", {
            "ssid": c["ssid"], "address": AP_ADDRESS, "clients": len(self._clients),
            "security": "WPA2-PSK" if c["security"] == AUTH_WPA2_PSK else "open"})


class Radio:
    """The radio of the simulated device in `run_dir`: use it as the `network` module."""

    STA_IF, AP_IF, AUTH_OPEN, AUTH_WPA2_PSK = STA_IF, AP_IF, AUTH_OPEN, AUTH_WPA2_PSK
    STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP = STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP
    STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD = STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD

    def __init__(self, run_dir):
        self.air = run_dir + "/air"
        try:
            os.mkdir(self.air)
        except OSError:
            pass
        files.remove(self.air + "/ap.json")  # power-on: the radio starts with no AP
        self._ifs = {STA_IF: _Sta(self), AP_IF: _Ap(self)}
        self._ifs[STA_IF]._publish()  # power-on: not associated
        self._hostname = "espressif"

    def WLAN(self, interface=STA_IF):  # noqa: N802  (the network module's name)
        return self._ifs[interface]

    def hostname(self, name=None):
        if name is None:
            return self._hostname
        if not 0 < len(name) <= 32:
            raise ValueError("hostname length")
        self._hostname = name

    def networks(self):
        try:
            with open(self.air + "/networks.json") as f:
                n = json.loads(f.read())
            return n if isinstance(n, dict) else {}
        except (OSError, ValueError):
            return {}
