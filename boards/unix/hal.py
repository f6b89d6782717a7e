# Simulated hardware of the `unix` board: LED, relay, room temperature, button, reset, flash,
# and (sim.json "radio": true) a Wi-Fi radio with station and access point (wifiradio.py); it
# implements the whole HAL interface (bootloader/halspec.py).
#
# Nothing happens at import. `Hal(run_dir)` builds the board from a simulated device's run
# directory, which holds the flash image, an optional sim.json ({"unique_id": hex,
# "speed": n, "outside_c": x, "start_c": x, "https_port": n, ...}) and the files the host
# watches: status.json (rewritten atomically on every LED or relay change), `button`
# (present = pressed), run/device.json (the boot report) and run/inbox (serviceport.py).

import hashlib
import json
import math
import os
import sys
import time

import halspec
import files
from flash import Flash, board_config
from halspec import PATTERNS

_HISTORY = 32  # LED changes kept in memory


class Room:
    """A heated room as a first-order thermal model.

    The temperature relaxes exponentially (time constant `tau_s`) towards the outside
    temperature, or towards outside + `heater_rise_k` while the heater is on. Each step
    uses the exact solution, so the result depends only on the tick values seen, not on
    how often the model is sampled. Simulated time runs `speed` times real time.
    """

    def __init__(self, ticks, speed=1, outside_c=5.0, start_c=18.0, heater_rise_k=25.0,
                 tau_s=3600.0):
        self._ticks = ticks
        self.speed = speed
        self.outside_c = outside_c
        self.heater_rise_k = heater_rise_k
        self.tau_s = tau_s
        self.temp_c = start_c
        self.heating = False
        self.sim_s = 0.0
        self._last = ticks()

    def _advance(self):
        now = self._ticks()
        dt = time.ticks_diff(now, self._last) * self.speed / 1000
        self._last = now
        if dt > 0:
            target = self.outside_c + (self.heater_rise_k if self.heating else 0.0)
            self.temp_c = target + (self.temp_c - target) * math.exp(-dt / self.tau_s)
            self.sim_s += dt

    def set_heater(self, on):
        self._advance()
        self.heating = bool(on)

    def temperature(self):
        self._advance()
        return self.temp_c


class TempSensor:
    """Reads the room in degrees Celsius, with a sensor's 1/16 degree resolution.
    `observed` (optional) is called after each read (the board publishes the room's state)."""

    def __init__(self, room, observed=None):
        self._room = room
        self._observed = observed

    def read(self):
        t = round(self._room.temperature() * 16) / 16
        if self._observed:
            self._observed()
        return t


class Relay:
    """Switches the room's heater; counts real switchings (on->off or off->on)."""

    def __init__(self, room, changed):
        self._room = room
        self._changed = changed
        self.switches = 0

    def value(self, on=None):
        if on is None:
            return int(self._room.heating)
        on = bool(on)
        if on != self._room.heating:
            self._room.set_heater(on)
            self.switches += 1
            self._changed()
        return int(on)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class Led:
    """A status LED: steady on/off, or a named blink pattern (timings in ms, on/off pairs)."""

    def __init__(self, ticks, changed):
        self._ticks = ticks
        self._changed = changed
        self.lit = False
        self.pattern_name = None
        self.timings = None
        self.changes = 0
        self.history = []  # (ticks_ms, state) of the last changes, oldest first

    def _record(self, state):
        self.changes += 1
        if len(self.history) >= _HISTORY:
            self.history.pop(0)
        self.history.append((self._ticks(), state))
        self._changed()

    def value(self, on=None):
        if on is None:
            return int(self.lit)
        self.pattern_name = self.timings = None
        self.lit = bool(on)
        self._record("on" if self.lit else "off")
        return int(self.lit)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def pattern(self, name, timings=None):
        """Blink under `name` (e.g. "alert"): `timings` ms on, ms off, ..., by default the
        named entry of PATTERNS, else an even 200 ms blink. None stops (LED off)."""
        if name is None:
            self.value(0)
            return
        self.pattern_name = name
        self.timings = list(timings or PATTERNS.get(name, (200, 200)))
        self.lit = True
        self._record(name)


class Button:
    """A push button; the host presses it by creating the file `path`."""

    def __init__(self, path):
        self._path = path

    def pressed(self):
        try:
            os.stat(self._path)
            return True
        except OSError:
            return False

    def press(self):
        with open(self._path, "w"):
            pass

    def release(self):
        try:
            os.remove(self._path)
        except OSError:
            pass


class Hal(halspec.Hal):
    """The simulated board, built from a run directory. `ticks` (ms) is injectable so
    tests can drive the clock; by default time.ticks_ms. `boot_number` counts the power-ons
    the sim supervisor made (in the boot report)."""

    def __init__(self, run_dir, ticks=None, speed=None, boot_number=0):
        sim = board_config()["sim"]
        self.run_dir = run_dir.rstrip("/") or "/"
        self._sim = sim
        sim_json = self._read_config(sim["config"])
        self._ticks = ticks or time.ticks_ms
        # The room does not cool down to start_c because the device restarted: continue from
        # the temperature last published (a reset or update takes well under a second).
        last = self._read_config(sim["status"]).get("temp_c") if ticks is None else None
        self.room = Room(self._ticks, speed if speed is not None else sim_json.get("speed", 1),
                         sim_json.get("outside_c", 5.0), last or sim_json.get("start_c", 18.0))
        self.sensor = TempSensor(self.room, self._publish_now_and_then)
        self._published = self._ticks()
        self.relay = Relay(self.room, self._publish)
        self.led = Led(self._ticks, self._publish)
        self.button = Button(self._path(sim["button"]))
        self._uid = sim_json.get("unique_id")
        self._flash = None
        self.boot_number = boot_number
        self.https_port = sim_json.get("https_port", 8443)
        self.heap_sample_ms = sim_json.get("heap_sample_ms", 0)
        self._channel = None
        # A Wi-Fi radio (wifiradio.py, the `network` API) only when sim.json asks for one:
        # without it the simulated device is simply on the host's network (network None).
        if sim_json.get("radio"):
            import wifiradio

            self.network = wifiradio.Radio(self.run_dir)
            # Two interfaces, two addresses: the API on the station's (loopback), the set-up
            # page alone on the access point's (wifiradio.AP_ADDRESS), as on a board.
            self.api_host = "127.0.0.1"
            self.setup_port = sim_json.get("setup_port", self.https_port + 1)
            self.setup_window_s = sim_json.get("setup_window_s", 600)

    def _path(self, name):
        return self.run_dir + "/" + name

    def _read_config(self, name):
        try:
            with open(self._path(name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    @property
    def flash(self):
        """The board's Flash (the run directory's image), opened on first use."""
        if self._flash is None:
            self._flash = Flash(self._path(self._sim["image"]))
        return self._flash

    def unique_id(self):
        """6 bytes, like an ESP32 MAC: sim.json's "unique_id", else derived from the run dir."""
        if self._uid:
            return bytes.fromhex(self._uid)
        path = self.run_dir if self.run_dir.startswith("/") else os.getcwd() + "/" + self.run_dir
        return hashlib.sha256(path.encode()).digest()[:6]

    def sim_seconds(self):
        """Simulated seconds since the board was built (real time times the speed)."""
        self.room.temperature()
        return self.room.sim_s

    def status(self):
        led = self.led
        return {"led": {"on": led.lit, "pattern": led.pattern_name, "timings": led.timings,
                        "changes": led.changes},
                "relay": {"on": bool(self.room.heating), "switches": self.relay.switches},
                "temp_c": self.room.temperature(), "sim_s": self.room.sim_s}

    def _publish_now_and_then(self):
        # Keep status.json's room temperature fresh (every 2 s) so that a restarted device
        # finds the room as it was, not back at its starting temperature.
        if time.ticks_diff(self._ticks(), self._published) >= 2000:
            self._publish()

    def _publish(self):
        # Temp file then rename: the host never reads a half-written status.
        path = self._path(self._sim["status"])
        files.write_json(path, self.status())
        self._published = self._ticks()

    def reset(self):
        """Restart the device: the process exits with the code the sim supervisor restarts on."""
        if self._flash is not None:
            self._flash.close()
        sys.exit(self._sim["reset_exit_code"])

    @property
    def channel(self):
        """The simulator's service channel (serviceport.py: run/inbox), the stand-in for a
        board's serial port: alert-only mode takes recovery bundles from it."""
        if self._channel is None:
            import serviceport

            self._channel = serviceport.Channel(self._path("run"))
        return self._channel

    def report(self, boot, mode):
        """Publish the boot decision for `iotctl sim status` (run/device.json, atomic write)."""
        st = boot.state() if boot.anchors else {}
        doc = {"boot": self.boot_number, "mode": mode, "slot": boot.slot,
               "version": boot.version, "trial": boot.trial, "last": st.get("last", ""),
               "reasons": boot.reasons, "time": time.time()}
        path = self._path("run/device.json")
        files.write_json(path, doc)

    def services(self, boot):
        """Board tasks the application runs beside its own: the simulator's service channel
        and, when sim.json asks for it (benchmarks), a sampler of the live heap."""
        import serviceport

        tasks = [serviceport.serve(boot, self.channel)]
        if self.heap_sample_ms:
            tasks.append(self._sample_heap())
        return tasks

    async def _sample_heap(self):
        # Live heap = allocated right after a collection, without the map of the ROMFS region
        # (flash on a board, romwindow.RomWindow); the peak goes to run/heap.json.
        import asyncio
        import gc

        import romwindow
        regions = romwindow.rom_regions(self.flash)
        mapped = regions.window.size if regions else 0
        peak = 0
        while True:
            gc.collect()
            live = gc.mem_alloc() - mapped
            if live > peak:
                peak = live
                with open(self._path("run/heap.json"), "w") as f:
                    f.write(json.dumps({"peak_live_bytes": peak, "heap_bytes": live +
                                        gc.mem_free()}))
            await asyncio.sleep_ms(self.heap_sample_ms)
