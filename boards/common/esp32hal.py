# The HAL of the ESP32 boards, parameterised by board.json: status LED (GPIO or WS2812 RGB),
# relay, SHT3x temperature sensor on I2C, button, reset, unique id, flash partitions, Wi-Fi.
#
# Nothing touches hardware at import: `machine`, `esp32` and `network` are imported (or
# injected) by the constructors, so the module imports, and is tested, on the unix port with
# the fakes in tests/fakes/. It implements the whole HAL interface (bootloader/halspec.py).
import json
import time

import halspec
from halspec import PATTERNS
SHT3X_ADDR = 0x44  # 0x45 when the sensor's ADDR pin is high (board.json "sensor_addr")
_SHT3X_MEASURE = b"\x24\x00"  # single shot, high repeatability, no clock stretching
_SHT3X_WAIT_MS = 16  # datasheet maximum for high repeatability: 15.5 ms
_WS2812_TIMING = (400, 850, 800, 450)  # ns high/low for a 0 bit, then a 1 bit (800 kHz)


class SensorError(OSError):
    """The temperature sensor is absent, silent or garbled; the message says which and where."""


def _crc8(data):
    # Sensirion CRC-8: polynomial 0x31, initial value 0xFF, no reflection.
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc << 1 ^ 0x31) & 0xFF if crc & 0x80 else crc << 1 & 0xFF
    return crc


class Sht3x:
    """Sensirion SHT30/SHT31/SHT35 on I2C: read() is a single-shot measurement in degrees
    Celsius (0.01 degree steps). Every reading is CRC-checked."""

    def __init__(self, i2c, addr=SHT3X_ADDR, where=""):
        self._i2c = i2c
        self.addr = addr
        self._where = where
        self._raw = bytearray(6)

    def present(self):
        return self.addr in self._i2c.scan()

    def read(self):
        try:
            self._i2c.writeto(self.addr, _SHT3X_MEASURE)
            time.sleep_ms(_SHT3X_WAIT_MS)
            self._i2c.readfrom_into(self.addr, self._raw)
        except OSError as e:
            raise SensorError("no SHT3x temperature sensor answers at I2C address 0x%02x%s "
                              "(%r): check its wiring and 3V3 supply" % (self.addr, self._where, e))
        raw = self._raw
        if _crc8(raw[0:2]) != raw[2]:
            raise SensorError("SHT3x reading at 0x%02x failed its CRC (noise on SDA/SCL?)"
                              % self.addr)
        return round(-45 + 175 * (raw[0] << 8 | raw[1]) / 65535, 2)


class _Led:
    """A status LED: steady on/off, or a named blink pattern (ms on, ms off, ...), driven by a
    one-shot hardware timer so that it blinks while the code blocks (alert-only mode)."""

    def __init__(self, machine, timer_id=0):
        self._Timer = machine.Timer
        self._timer = machine.Timer(timer_id)
        self.lit = False
        self.pattern_name = None
        self.timings = None
        self._step = 0

    def value(self, on=None):
        if on is None:
            return int(self.lit)
        self._stop()
        self.pattern_name = self.timings = None
        self._show(bool(on))
        return int(self.lit)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def pattern(self, name, timings=None):
        """Blink under `name` (e.g. "alert"); None stops (LED off)."""
        if name is None:
            self.value(0)
            return
        self._stop()
        self.pattern_name = name
        self.timings = tuple(timings or PATTERNS.get(name, (200, 200)))
        self._step = 0
        self._show(True)
        self._arm()

    def _arm(self):
        self._timer.init(mode=self._Timer.ONE_SHOT, period=self.timings[self._step],
                         callback=self._tick)

    def _tick(self, _timer):
        self._step = (self._step + 1) % len(self.timings)
        self._show(self._step % 2 == 0)
        self._arm()

    def _stop(self):
        if self.pattern_name is not None:
            self._timer.deinit()

    def _show(self, lit):
        self.lit = lit
        self._write(lit)


class GpioLed(_Led):
    """A plain LED on a GPIO (ESP32-DevKitC: GPIO2, active high)."""

    def __init__(self, machine, pin):
        super().__init__(machine)
        self._pin = machine.Pin(pin, machine.Pin.OUT, value=0)

    def _write(self, lit):
        self._pin.value(1 if lit else 0)


class RgbLed(_Led):
    """One WS2812 RGB LED (ESP32-S3/C3 DevKits), driven with machine.bitstream; data goes out
    in G, R, B order. The pattern colour is red, steady "on" a dim white."""

    def __init__(self, machine, pin, on=(24, 24, 24), alert=(64, 0, 0)):
        super().__init__(machine)
        self._bitstream = machine.bitstream
        self._pin = machine.Pin(pin, machine.Pin.OUT, value=0)
        self._on = on
        self._alert = alert
        self._grb = bytearray(3)

    def _write(self, lit):
        r, g, b = (self._alert if self.pattern_name else self._on) if lit else (0, 0, 0)
        self._grb[0], self._grb[1], self._grb[2] = g, r, b
        self._bitstream(self._pin, 0, _WS2812_TIMING, self._grb)


class Relay:
    """The heater relay (module input on a GPIO); counts real switchings."""

    def __init__(self, machine, pin, active_low=False):
        self._inv = 1 if active_low else 0
        self._pin = machine.Pin(pin, machine.Pin.OUT, value=self._inv)
        self._on = False
        self.switches = 0

    def value(self, on=None):
        if on is None:
            return int(self._on)
        on = bool(on)
        if on != self._on:
            self._pin.value(int(on) ^ self._inv)
            self._on = on
            self.switches += 1
        return int(on)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class Button:
    """A push button to ground with the internal pull-up (BOOT button), or to 3V3."""

    def __init__(self, machine, pin, active_low=True):
        pull = machine.Pin.PULL_UP if active_low else machine.Pin.PULL_DOWN
        self._pin = machine.Pin(pin, machine.Pin.IN, pull)
        self._active = 0 if active_low else 1

    def pressed(self):
        return self._pin.value() == self._active


class Flash:
    """The board's partitions as block devices (esp32.Partition), by name."""

    def __init__(self, esp32):
        self._esp32 = esp32

    def partition(self, name, readonly=False):
        try:
            return self._esp32.Partition(name)
        except OSError:
            raise ValueError("no partition " + name)


class Wifi:
    """Station mode from DATA/wifi.json {"ssid", "password"}, in the background: connects,
    logs the address once, reconnects with a growing pause. Nothing waits for it."""

    def __init__(self, path, log, network=None, identity=None):
        self.path = path
        self.log = log
        self._network = network
        self.identity = identity  # the factory identity.json: its device id names the board
        self.address = None

    def _name(self):
        try:
            with open(self.identity) as f:
                return json.loads(f.read())["device_id"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    async def run(self):
        import asyncio

        try:
            with open(self.path) as f:
                conf = json.loads(f.read())
            ssid, password = conf["ssid"], conf["password"]
        except (OSError, ValueError, KeyError):
            self.log("wifi: not configured (%s)" % self.path)
            return
        network = self._network
        if network is None:
            import network
        name = self._name()
        if name:
            # DHCP and MicroPython's mDNS responder (UDP 5353) answer to <device id>.local,
            # the name on the label's set-up address and in the device certificate.
            try:
                network.hostname(name)
            except (AttributeError, ValueError, OSError) as e:
                self.log("wifi: hostname %s not set (%r)" % (name, e))
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        pause = 2
        while True:
            if not wlan.isconnected():
                self.address = None
                try:
                    wlan.connect(ssid, password)
                except OSError as e:
                    self.log("wifi: connect failed: %r" % (e,))
                for _ in range(30):  # up to 15 s for the association and DHCP
                    if wlan.isconnected():
                        break
                    await asyncio.sleep_ms(500)
            if wlan.isconnected():
                if self.address is None:
                    self.address = wlan.ifconfig()[0]
                    self.log("wifi: connected to %s, address %s" % (ssid, self.address))
                pause = 2
                await asyncio.sleep(5)
            else:
                self.log("wifi: no connection to %s; retrying in %d s" % (ssid, pause))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 120)


class Esp32Hal(halspec.Hal):
    """The board from its board.json (`board_json`; default: the frozen `boardcfg` module)."""

    BOARD = None  # the board this HAL is for (set by boards/<board>/hal.py)

    def __init__(self, board_json=None, machine=None, log=print):
        if board_json is None:
            import boardcfg  # board.json, frozen into the firmware by the manifest

            board_json = boardcfg.CONFIG
        if self.BOARD and board_json.get("board") != self.BOARD:
            raise ValueError("board.json is for %s, this HAL is for %s"
                             % (board_json.get("board"), self.BOARD))
        if machine is None:
            import machine
        self.board_json = board_json
        self.log = log
        self._machine = machine
        pins = board_json["pins"]
        if board_json.get("led") == "ws2812":
            self.led = RgbLed(machine, pins["led"])
        else:
            self.led = GpioLed(machine, pins["led"])
        self.relay = Relay(machine, pins["relay"], board_json.get("relay_active_low", False))
        i2c = machine.I2C(0, scl=machine.Pin(pins["sensor_scl"]),
                          sda=machine.Pin(pins["sensor_sda"]), freq=100000)
        self.sensor = Sht3x(i2c, board_json.get("sensor_addr", SHT3X_ADDR),
                            " (SDA GPIO%d, SCL GPIO%d)" % (pins["sensor_sda"], pins["sensor_scl"]))
        self.button = Button(machine, pins["button"], board_json.get("button_active_low", True))
        self.wifi = Wifi(board_json.get("data_mount", "/data") + "/wifi.json", log,
                         identity=board_json.get("factory_mount", "/factory") + "/identity.json")
        self.https_port = 443
        # Owner onboarding (firmware/setupap.py): the set-up page on the access point's own
        # address, 192.168.4.1:443. asyncio's listeners set SO_REUSEADDR, and lwIP hands a
        # connection to the listener bound to the exact address before one bound to all.
        self.setup_port = 443
        self.setup_window_s = board_json.get("setup_window_s", 600)
        self._network = None
        self._flash = None

    @property
    def network(self):
        """The radio (the `network` module), imported on first use: the app's onboarding
        runs its station and its set-up access point."""
        if self._network is None:
            import network

            self._network = network
        return self._network

    @property
    def flash(self):
        """The partitions (esp32.Partition), on first use."""
        if self._flash is None:
            import esp32

            self._flash = Flash(esp32)
        return self._flash

    def unique_id(self):
        """6 bytes: the chip's base MAC address."""
        return self._machine.unique_id()

    def reset(self):
        """Hard reset: the ESP-IDF bootloader runs again (and rolls back an unconfirmed image)."""
        self._machine.reset()

    def report(self, boot, mode):
        """Board-level status line on the console (what tools/hwtest.py reads)."""
        self.log("board: mode %s, slot %s, version %s%s" % (
            mode, boot.slot, boot.version, " (trial)" if boot.trial else ""))

    def services(self, boot):
        """Board tasks the application runs beside its own. Once the app has taken the radio
        (`network`, for its onboarding and station), the board's own Wi-Fi task stays out."""
        return [] if self._network is not None else [self.wifi.run()]
