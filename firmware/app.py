# Application entry point: started by the boot stage with the verified slot's Boot context.
# Runs the thermostat (never waits on the network), the local TLS API, the cloud link (when
# the factory record names a broker), the board's services, and, on a trial boot, the
# self-test that confirms the update or rolls it back.
import asyncio
import time

import api
import sealed
import store
from auth import Sessions
from credentials import Credentials
from marks import Marks
from privacy import Privacy
from thermostat import Thermostat
from updater import Updater

RESTART_DELAY_MS = 800  # lets the HTTP response reach the client before the reset
_PLAUSIBLE_EPOCH = 1704067200  # 2024-01-01: before this the clock is unset; skip expiry checks


def wall_clock():
    """The device's one wall clock: Unix seconds, or 0 while the clock is unset (an expiry or
    a postponement is then not judged by it). The updater and the cloud code take it."""
    now = int(time.time())
    return now if now >= _PLAUSIBLE_EPOCH else 0


class Device:
    """The running device: what the API and the services act on."""

    def __init__(self, boot):
        self.boot = boot
        self.hal = boot.hal
        self.log = boot.log
        self.data = boot.root
        self.factory = boot.profile["factory"]
        self.capacity = boot.capacity
        # Owner records on the data filesystem are sealed with the device's key (4.4-1).
        sealer = sealed.from_factory(self.factory, self.data)
        store.use(sealer)
        if sealer is None:
            self.log("app: no device secret in the factory record: records are not sealed")
        for d in ("/app", "/auth", "/app.1", "/auth.1"):  # .1: second copies (store.py)
            store.makedirs(self.data + d)
        self.identity = store.load(self.factory + "/identity.json", {})
        self.thermostat = Thermostat(self.hal, self.data + "/app/settings.json")
        part = self.hal.marks()  # the owner mark outside littlefs (credentials.py)
        if part is None:
            self.log("app: no marks partition: a lost owner record cannot be told from none")
        self.credentials = Credentials(self.factory + "/password.json",
                                       self.data + "/auth/password.json",
                                       blocklist_path=self._slot_file("blocklist.txt"),
                                       marks=Marks(part) if part is not None else None)
        self.credentials.settle()  # a device from before the mark: mark its owner record
        self.sessions = Sessions(self.credentials)
        # The owner's personal data and consents: the pages and the cloud link use this one.
        # A deletion rebuilds the password's directory too (its content kept).
        self.privacy = Privacy(self.data, self.thermostat, keep_dirs=(
            self.credentials.owner_path.rsplit("/", 1)[0],))
        self.privacy.watch(self.thermostat)  # every accepted settings change goes in history
        self.clock = wall_clock
        self.updater = Updater(boot, boot.buf, wall_clock, self.thermostat)
        self.started = time.ticks_ms()
        self.server = None
        self.cloud = None
        self.port = self.hal.https_port

    def _slot_file(self, name):
        path = self.boot.app_dir + "/" + name
        try:
            open(path).close()
            return path
        except OSError:
            return None

    def status(self):
        st = self.boot.state()
        return {"model": self.identity.get("model"), "device_id": self.identity.get("device_id"),
                "version": self.boot.version, "slot": self.boot.slot, "trial": self.boot.trial,
                "slots": {"active": st["active"], "pending": st["pending"],
                          "security_floor": st["sec_floor"], "key_floor": st["key_floor"]},
                "mode": "normal",
                "uptime_s": time.ticks_diff(time.ticks_ms(), self.started) // 1000,
                "update": self.updater.state, "last_event": st["last"],
                "thermostat": self.thermostat.state()}

    def restart_later(self, delay_ms=RESTART_DELAY_MS):
        async def _restart():
            await asyncio.sleep_ms(delay_ms)
            self.log("app: restarting into the new version")
            self.hal.reset()
        asyncio.create_task(_restart())
        return delay_ms

    def tls_context(self):
        """The API's server context: AEAD suites only, the chain up to the manufacturer CA
        (tlsctx.py)."""
        import tlsctx

        try:
            try:  # a certificate the cloud link renewed (certrenew.py), else the factory's
                with open(self.data + "/cloud/cert.der", "rb") as f:
                    cert = f.read()
            except OSError:
                with open(self.factory + "/device.crt.der", "rb") as f:
                    cert = f.read()
            with open(self.factory + "/device.key.der", "rb") as f:
                key = f.read()
        except OSError:
            return None
        try:
            with open(self.factory + "/ca.crt.der", "rb") as f:
                ca = f.read()
        except OSError:
            ca = None  # an older factory record: the leaf alone
        return tlsctx.server(cert, key, ca)

    async def start_api(self):
        ctx = self.tls_context()
        if ctx is None:
            self.log("app: no device certificate in the factory data; local API disabled")
            return False
        self.server = api.build(self)
        await self.server.serve(self.hal.api_host, self.port, ctx)
        self.log("app: API listening on port %d (TLS)" % self.port)
        return True

    async def confirm_or_roll_back(self):
        import selftest  # only on a trial boot

        reason = await selftest.run(self)
        if reason is None:
            self.boot.confirm()
            self.hal.report(self.boot, "normal")
            if self.cloud is not None:  # a pulled release: tell the service it confirmed
                self.cloud.puller.report_outcome()
        else:
            self.log("app: self-test failed: " + reason)
            self.boot.rollback(reason)


async def _main(boot):
    dev = Device(boot)
    tasks = [asyncio.create_task(dev.thermostat.run())]
    await dev.start_api()
    if dev.identity.get("cloud"):
        # Loaded only when the factory record names a broker: ~56 KiB of heap otherwise idle.
        import cloud

        cloud.start(dev)  # sets dev.cloud; never waited on by the thermostat
    if dev.hal.network is not None:
        import setupap  # Wi-Fi: the station, and the set-up access point in its window

        tasks.append(asyncio.create_task(setupap.Onboarding(dev).run()))
    for coro in dev.hal.services(boot):
        tasks.append(asyncio.create_task(coro))
    if boot.trial:
        await dev.confirm_or_roll_back()
    await asyncio.gather(*tasks)


def main(boot):
    boot.log("app: %s running from slot %s" % (boot.version, boot.slot))
    asyncio.run(_main(boot))
