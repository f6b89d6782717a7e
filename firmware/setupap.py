# Owner onboarding over Wi-Fi (ETSI 4.12-1): the set-up access point, its window, and the
# station that keeps the device on the owner's network.
#
# A device with no Wi-Fi settings (new, or after a factory reset) opens a WPA2 access point
# named setup-<device id>, with the per-device passphrase printed on its label (derived from
# the factory secret, sealed.ap_passphrase), for one client at a time. It stays open for a
# window (the board's `hal.setup_window_s` after power-on, or after the button is held
# BUTTON_MS), and is never opened for any other reason: no fallback AP when the home
# network drops (the device keeps working locally and retries). On the AP's address only the
# set-up page listens, over TLS with the device certificate: GET/POST /setup takes the home
# network's SSID and password, tries them, reports the result, and only after a success
# stores them (sealed, under app/: factory reset removes them) and closes the AP.
# The radio is the board's (`hal.network`, the ESP32 port's `network` API).
import asyncio
import binascii
import json
import os
import time

from micropython import const

import sealed
import station
import store
from httpd import HTTPError, Response, Server

BUTTON_MS = const(3000)
POLL_MS = const(200)
TRY_MS = const(20000)  # association and DHCP for a tried network
CLOSE_DELAY_MS = const(1500)  # lets the result page reach the phone before the AP goes
MAX_PAUSE_S = const(120)
_HTML = "text/html; charset=utf-8"


def _esc(v):
    return str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        .replace('"', "&quot;")


def check_network(ssid, password):
    """Validate what the owner typed (ValueError with the reason); returns (ssid, password)."""
    if not isinstance(ssid, str) or not 0 < len(ssid.encode()) <= 32:
        raise ValueError("the network name must be 1 to 32 bytes")
    for c in ssid:
        if ord(c) < 32 or ord(c) == 127:
            raise ValueError("the network name may not contain control characters")
    if not isinstance(password, str) or not 8 <= len(password) <= 63:
        raise ValueError("the Wi-Fi password must be 8 to 63 characters (WPA2)")
    for c in password:
        if not 32 <= ord(c) < 127:
            raise ValueError("the Wi-Fi password must be printable ASCII (WPA2)")
    return ssid, password


class Onboarding:
    """The Wi-Fi of the running Device `dev`: run() is its one task."""

    def __init__(self, dev):
        self.dev = dev
        self.log = dev.log
        self.net = dev.hal.network
        self.path = dev.data + station.SETTINGS  # alert-only mode reads it too
        self.window_ms = dev.hal.setup_window_s * 1000
        self.port = dev.hal.setup_port
        self.ssid = "setup-" + str(dev.identity.get("device_id"))
        secret = sealed.read_secret(dev.factory)
        self.key = sealed.ap_passphrase(secret) if secret else None
        self.server = None
        self.until = 0
        self.token = None
        self.trying = False
        self.station = None  # the task that keeps the station connected

    # --- the access point --------------------------------------------------------------

    async def open_ap(self, why):
        if self.server is not None:
            self.until = time.ticks_add(time.ticks_ms(), self.window_ms)  # a new window
            return
        if self.key is None:
            self.log("setup: no device secret in the factory record; no access point")
            return
        ctx = self.dev.tls_context()
        if ctx is None:
            return
        ap = self.net.WLAN(self.net.AP_IF)
        ap.config(ssid=self.ssid, key=self.key, security=self.net.AUTH_WPA2_PSK,
                  max_clients=1)
        ap.active(True)
        self.token = binascii.hexlify(os.urandom(16)).decode()
        srv = Server(self.log)
        srv.route("GET", "/setup")(self._get)
        srv.route("POST", "/setup", max_body=512)(self._post)
        self.server = await srv.serve(ap.ifconfig()[0], self.port, ctx)
        self.until = time.ticks_add(time.ticks_ms(), self.window_ms)
        self.log("setup: access point %s open for %d s (%s)" % (
            self.ssid, self.window_ms // 1000, why))

    async def close_ap(self, why):
        if self.server is None:
            return
        srv, self.server, self.token = self.server, None, None
        srv.close()
        await srv.wait_closed()
        self.net.WLAN(self.net.AP_IF).active(False)
        self.log("setup: access point closed (%s)" % why)

    def _migrate(self):
        # Settings written over the console at the factory (docs/real-board.md section 7)
        # move into the sealed record; the plaintext file goes.
        legacy = self.dev.data + station.LEGACY
        try:
            with open(legacy) as f:
                conf = json.loads(f.read())
            conf = {"ssid": conf["ssid"], "password": conf["password"]}
        except (OSError, ValueError, KeyError, TypeError):
            return
        store.save(self.path, conf)
        os.remove(legacy)
        self.log("wifi: settings moved into the sealed record")

    async def run(self):
        self._migrate()  # before the board's own Wi-Fi service looks for the file
        conf = store.load(self.path)
        if isinstance(conf, dict) and conf.get("ssid"):
            self._keep(conf)
        else:
            await self.open_ap("no Wi-Fi settings")
        button = self.dev.hal.button
        armed, since = False, None
        while True:
            await asyncio.sleep_ms(POLL_MS)
            now = time.ticks_ms()
            if self.server is not None:
                self.net.WLAN(self.net.AP_IF).status("stations")  # admits or refuses phones
                if time.ticks_diff(now, self.until) >= 0 and not self.trying:
                    await self.close_ap("set-up window ended")
            if not button.pressed():
                armed, since = True, None
            elif armed:
                if since is None:
                    since = now
                elif time.ticks_diff(now, since) >= BUTTON_MS:
                    armed = False  # once per press
                    await self.open_ap("button held %d s" % (BUTTON_MS // 1000))

    # --- the station ---------------------------------------------------------------------

    def _keep(self, conf):
        if self.station is not None:
            self.station.cancel()
        self.station = asyncio.create_task(self._station(conf["ssid"], conf["password"]))

    async def _associate(self, sta, ssid, password):
        """Connect and wait: the radio's final status (STAT_GOT_IP on success)."""
        sta.active(True)
        try:
            sta.connect(ssid, password)
        except OSError as e:
            self.log("wifi: connect failed: %r" % (e,))
            return None
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < TRY_MS:
            st = sta.status()
            if st != self.net.STAT_CONNECTING:
                return st
            await asyncio.sleep_ms(250)
        return self.net.STAT_CONNECTING

    async def _station(self, ssid, password):
        # Keeps the device on its network; when the network is gone it retries with a growing
        # pause. It never opens the access point: only the button does.
        sta = self.net.WLAN(self.net.STA_IF)
        name = self.dev.identity.get("device_id")
        if name:  # DHCP and mDNS answer to <device id>.local: named before the interface is up
            try:
                self.net.hostname(name)
            except (AttributeError, ValueError, OSError) as e:
                self.log("wifi: hostname %s not set (%r)" % (name, e))
        pause, up = 2, False
        while True:
            if not sta.isconnected():
                if up:
                    self.log("wifi: lost %s" % ssid)
                    up = False
                await self._associate(sta, ssid, password)
            if sta.isconnected():
                if not up:
                    self.log("wifi: connected to %s, address %s" % (ssid, sta.ifconfig()[0]))
                    up, pause = True, 2
                await asyncio.sleep(1)
            else:
                self.log("wifi: no connection to %s; retrying in %d s" % (ssid, pause))
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_S)

    # --- the set-up page (the only thing on the AP's address) ----------------------------

    def _page(self, body, msg=None, ok=False, status=200):
        out = ['<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" '
               'content="width=device-width,initial-scale=1"><title>Wi-Fi set-up</title>'
               '<main><h1>Connect your thermostat to Wi-Fi</h1>']
        if msg:
            out += ['<p class="', "ok" if ok else "err", '" role="status">', _esc(msg), '</p>']
        return Response(out + body + ['</main>'], status, _HTML)

    def _form(self, ssid=""):
        return ['<form method="post" action="/setup"><input type="hidden" name="token" '
                'value="', self.token or "", '"><label>Your Wi-Fi network (name)<br><input '
                'name="ssid" maxlength="32" required value="', _esc(ssid), '"></label><br>'
                '<label>Its password<br><input type="password" name="password" minlength="8" '
                'maxlength="63" required></label><br><button>Connect</button></form>'
                '<p>The thermostat tries the network, tells you the result, and then closes '
                'this set-up network.</p>']

    async def _get(self, req):
        return self._page(self._form())

    async def _post(self, req):
        f = await req.form(512, 4)
        ssid = f.get("ssid", "")
        if sorted(f) != ["password", "ssid", "token"]:
            return self._page(self._form(ssid), "send the network name and its password",
                              status=400)
        if self.token is None or f["token"] != self.token:
            raise HTTPError(403, "reload the set-up page and try again")
        try:
            ssid, password = check_network(ssid, f["password"])
        except ValueError as e:
            return self._page(self._form(ssid), str(e), status=422)
        if self.trying:
            return self._page(self._form(ssid), "already trying a network", status=409)
        self.trying = True
        try:
            sta = self.net.WLAN(self.net.STA_IF)
            if self.station is not None:
                self.station.cancel()
                self.station = None
            st = await self._associate(sta, ssid, password)
        finally:
            self.trying = False
        if st != self.net.STAT_GOT_IP:
            sta.disconnect()
            why = {self.net.STAT_WRONG_PASSWORD: "the password is wrong",
                   self.net.STAT_NO_AP_FOUND: "no network with that name is in range"}.get(
                st, "the network did not answer")
            self.log("setup: %s refused (%s)" % (ssid, why))
            old = store.load(self.path)
            if isinstance(old, dict) and old.get("ssid"):
                self._keep(old)  # back to the settings that were there
            return self._page(self._form(ssid), "Not connected to %s: %s. Nothing was "
                              "changed; check and try again." % (ssid, why), status=422)
        store.save(self.path, {"ssid": ssid, "password": password})
        address = sta.ifconfig()[0]
        self.log("setup: connected to %s, address %s; settings saved" % (ssid, address))
        self._keep({"ssid": ssid, "password": password})

        async def _close():
            await asyncio.sleep_ms(CLOSE_DELAY_MS)
            await self.close_ap("home network set")
        asyncio.create_task(_close())
        name = _esc(self.dev.identity.get("device_id"))
        return self._page(['<p>The set-up network ', _esc(self.ssid), ' closes now. Join ',
                           _esc(ssid), ' again and open <b>https://', name, '.local/</b> to log '
                           'in with the password on the label.</p>'],
                          "Connected to %s (address %s)." % (ssid, address), ok=True)
