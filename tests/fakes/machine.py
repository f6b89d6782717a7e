# A fake `machine` for the unix port (put tests/fakes first on MICROPYPATH): Pin, I2C, Timer,
# bitstream, unique_id and reset that record every call in `log`, so that device tests can
# assert the exact pin levels and bus bytes a HAL produces. I2C devices are models attached
# with `attach(addr, model)`; an address without a model does not acknowledge (ENODEV).
log = []
inputs = {}  # pin id -> level read by Pin.value() (tests set it: a pressed button is 0)
_devices = {}
UNIQUE_ID = b"\xa4\xcf\x12\x34\x56\x78"


class ResetCalled(Exception):
    """machine.reset() never returns on a chip; here it raises this."""


def clear():
    log.clear()
    inputs.clear()
    _devices.clear()


def attach(addr, model):
    _devices[addr] = model


def detach(addr):
    _devices.pop(addr, None)


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self._out = value
        log.append(("Pin", id, mode, pull, value))

    def value(self, v=None):
        if v is None:
            return inputs.get(self.id, 1 if self._out is None else self._out)
        self._out = int(v)
        log.append(("pin", self.id, int(v)))
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class I2C:
    def __init__(self, id, scl=None, sda=None, freq=400000):
        log.append(("I2C", id, scl.id if scl else None, sda.id if sda else None, freq))

    def _dev(self, addr):
        if addr not in _devices:
            raise OSError(19)  # ENODEV: no acknowledge, as the ESP32 port reports it
        return _devices[addr]

    def scan(self):
        return sorted(_devices)

    def writeto(self, addr, buf, stop=True):
        log.append(("i2c.write", addr, bytes(buf)))
        self._dev(addr).write(bytes(buf))
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        data = self._dev(addr).read(len(buf))
        buf[:] = data
        log.append(("i2c.read", addr, len(buf)))

    def readfrom(self, addr, n, stop=True):
        buf = bytearray(n)
        self.readfrom_into(addr, buf)
        return bytes(buf)


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id):
        self.id = id
        self.callback = None
        self.period = None
        log.append(("Timer", id))

    def init(self, mode=PERIODIC, period=-1, callback=None):
        self.mode, self.period, self.callback = mode, period, callback
        log.append(("timer.init", self.id, mode, period))

    def deinit(self):
        self.callback = None
        log.append(("timer.deinit", self.id))

    def fire(self):
        """Test helper: the period elapsed."""
        cb = self.callback
        if self.mode == Timer.ONE_SHOT:
            self.callback = None
        cb(self)


def bitstream(pin, encoding, timing, buf):
    log.append(("bitstream", pin.id, encoding, tuple(timing), bytes(buf)))


def unique_id():
    return UNIQUE_ID


def reset():
    log.append(("reset",))
    raise ResetCalled()


class Sht3xModel:
    """A Sensirion SHT3x: answers a single-shot measurement with temperature and humidity,
    each followed by its CRC-8. `corrupt` flips a bit of the temperature CRC."""

    def __init__(self, temp_c=21.5, rh=40.0):
        self.temp_c = temp_c
        self.rh = rh
        self.corrupt = False
        self._out = b""

    @staticmethod
    def crc(data):
        crc = 0xFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        return crc

    def write(self, data):
        if data != b"\x24\x00":
            raise OSError(5)  # the model only knows the command the HAL must send
        t = int((self.temp_c + 45) * 65535 / 175 + 0.5)
        h = int(self.rh * 65535 / 100 + 0.5)
        tb, hb = bytes((t >> 8, t & 0xFF)), bytes((h >> 8, h & 0xFF))
        self._out = tb + bytes((self.crc(tb) ^ (1 if self.corrupt else 0),)) + hb + bytes(
            (self.crc(hb),))

    def read(self, n):
        out, self._out = self._out[:n], self._out[n:]
        return out + b"\xff" * (n - len(out))
