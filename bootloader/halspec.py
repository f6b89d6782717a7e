# The HAL interface: what every board's `hal.Hal` offers the boot stage and the application.
# boards/unix/hal.py (the simulator) and boards/common/esp32hal.py (the ESP32 boards) both
# derive from `Hal` below and implement all of it; callers use these names directly and never
# probe with getattr/hasattr. A feature a board lacks is a declared attribute holding its
# "absent" value (e.g. `network = None`), never a missing name. `check(hal)` lists what a HAL
# object gets wrong (tests/device/hal_interface.py runs it against every board's HAL).
#
# Components (instance attributes, all required):
#   led      status LED: value(on=None) -> 0/1 (None reads; a value stops any pattern),
#            on(), off(), pattern(name, timings=None) blinks under `name` with timings ms on,
#            ms off, ... (default PATTERNS[name]; None stops: LED off); `lit`,
#            `pattern_name` (None when steady) and `timings` tell its state.
#   relay    the heater relay: value(on=None) -> 0/1, on(), off(); `switches` counts real
#            changes of state.
#   sensor   the temperature sensor: read() -> degrees Celsius (float); raises OSError
#            (a subclass naming the fault) when it is absent, silent or garbled.
#   button   the board's push button: pressed() -> bool, now.
#   flash    the board's flash as the boot stage of that board reads it (board-specific
#            object: the unix board's NOR image, the ESP32 partitions by name).
# Methods (required):
#   unique_id()          6 bytes that name this chip (the ESP32's base MAC).
#   reset()              restart the device (never returns on a board).
#   report(boot, mode)   publish the boot decision (`mode`: "normal", "alert-only") where the
#                        board's watcher reads it (console line, the sim's device.json).
#   services(boot)       a list of coroutines the application runs beside its own tasks.
#   marks()              the `marks` partition as a block device (two raw 4 KiB sectors outside
#                        littlefs: the owner mark, bootloader/marks.py); None when the board's
#                        partition table has none (flashed before the region existed). Hal
#                        below provides it from flash.partition(), the same on every board.
# Optional features (class attributes here hold the "absent" values):
#   network          the Wi-Fi radio, with MicroPython's `network` module API (WLAN(STA_IF),
#                    WLAN(AP_IF), hostname()); None: the board is on a network it does not
#                    manage (the simulator without a radio). The app's onboarding and the boot
#                    stage's alert-only uplink (station.py) drive it.
#   https_port       port of the local TLS API.
#   api_host         address the local API binds to.
#   setup_port       port of the onboarding set-up page on the access point's address.
#   setup_window_s   how long the set-up access point stays open after power-on or a press.

PATTERNS = {"alert": (100, 100, 100, 100, 100, 700)}  # ms on, ms off, ... (every board)

COMPONENTS = {
    "led": ("value", "on", "off", "pattern", "lit", "pattern_name", "timings"),
    "relay": ("value", "on", "off", "switches"),
    "sensor": ("read",),
    "button": ("pressed",),
}
BOARD_SPECIFIC = ("flash",)
METHODS = ("unique_id", "reset", "report", "services", "marks")
OPTIONAL = {"network": None, "https_port": 443, "api_host": "0.0.0.0", "setup_port": 443,
            "setup_window_s": 600}


class Hal:
    """Base of every board's HAL: the optional features' absent values, and marks(), which
    every board gets from its flash's partition table. A board overrides what it has; the
    other required components and methods are its own (see check)."""

    network = None
    https_port = 443
    api_host = "0.0.0.0"
    setup_port = 443
    setup_window_s = 600

    def marks(self):
        """The `marks` partition (the owner mark, bootloader/marks.py) as a block device, or
        None when the partition table has none (a board flashed before the region existed)."""
        try:
            return self.flash.partition("marks")
        except ValueError:
            return None


def _has(obj, name):
    # The checker may probe (nothing else does): a property on the class counts without
    # running it (the ESP32 `flash` imports esp32 on first use).
    return hasattr(type(obj), name) or hasattr(obj, name)


def check(hal):
    """What `hal` gets wrong against the interface: a list of problems, empty when it
    implements all of it."""
    problems = []
    if not isinstance(hal, Hal):
        problems.append("does not derive from halspec.Hal")
    for comp, members in COMPONENTS.items():
        if not _has(hal, comp):
            problems.append("no " + comp)
            continue
        obj = getattr(hal, comp)
        for m in members:
            if not _has(obj, m):
                problems.append("%s has no %s" % (comp, m))
    for name in BOARD_SPECIFIC:
        if not _has(hal, name):
            problems.append("no " + name)
    for name in METHODS:
        if not _has(hal, name) or not callable(getattr(hal, name)):
            problems.append("no method %s()" % name)
    for name, absent in OPTIONAL.items():
        if not _has(hal, name):
            problems.append("no attribute " + name)
            continue
        v = getattr(hal, name)
        if absent is None:
            if v is not None and not hasattr(v, "WLAN"):
                problems.append("network is neither None nor a radio (no WLAN)")
        elif type(v) is not type(absent):
            problems.append("%s is %r, not a %s" % (name, v, type(absent).__name__))
    return problems
