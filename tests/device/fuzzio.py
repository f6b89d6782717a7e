# Shared by the fuzz harnesses (http_fuzz.py, mqtt_fuzz.py): the provisioned simulated device's
# verified app, frames in on stdin, and a digest of what is stored, to tell whether a refused
# input changed anything.
import hashlib
import os

import bootstage
import flash
from hal import Hal
from servicejig import sim_config

_BUF = bytearray(2048)


def device(simdir):
    """The device of SIMDIR as at power-on, its verified slot importable: (app.Device, flash)."""
    hal = Hal(simdir)
    fl = hal.flash
    flash.mount_factory(fl)
    flash.mount_data(fl)
    boot = bootstage.start(hal, sim_config(), lambda m: None)
    assert boot.slot, boot.reasons
    boot.mount_app()
    import app

    return app.Device(boot), fl


def digest(top, skip=(), h=None):
    """SHA-256 over the names and contents of every file under `top`, except names in `skip`
    (e.g. a record that changes by design: the login throttle)."""
    h = h or hashlib.sha256()
    for e in sorted(os.ilistdir(top)):
        if e[0] in skip:
            continue
        path = top + "/" + e[0]
        h.update(path.encode())
        if e[1] & 0x4000:
            digest(path, skip, h)
        else:
            with open(path, "rb") as f:
                while True:
                    n = f.readinto(_BUF)
                    if not n:
                        break
                    h.update(memoryview(_BUF)[:n])
    return h


def read_frame(stdin):
    """One frame: a line with the length, then that many bytes; None at the end."""
    line = stdin.readline()
    if not line:
        return None
    n = int(line)
    data = b""
    while len(data) < n:
        chunk = stdin.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
