"""Supervisor of one simulated device: runs it as a `micropython` process and restarts it when
it calls machine.reset() (exit code 75). `python -m host_tools.sim.supervisor DIR`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import mpy
from . import RESET_EXIT, run_dir


class PowerOff(Exception):
    """SIGTERM: raised out of Popen.wait() so that the child can be killed and reaped."""


def _power_off(signum, frame):
    raise PowerOff()


def main(d):
    d = Path(d)
    rd = run_dir(d)
    env = {**os.environ, "MICROPYPATH": mpy.device_path("unix")}
    heap = json.loads((d / "sim.json").read_text()).get("heapsize") \
        if (d / "sim.json").exists() else None
    # The unix port cannot map flash: the board's map of the app's ROMFS region is a buffer in
    # the heap (boards/unix/flash.py RomWindow), so the default heap leaves room for a region.
    heap = heap or "8m"
    signal.signal(signal.SIGTERM, _power_off)
    boot = 0
    child = None
    try:
        while True:
            boot += 1
            cmd = [mpy.micropython_path(), *(["-X", f"heapsize={heap}"] if heap else []),
                   "-m", "unixboard", str(d), str(boot)]  # precompiled, as if frozen
            child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
            (rd / "device.pid").write_text(str(child.pid))
            code = child.wait()
            if code == RESET_EXIT:
                print(f"[sim] device reset (boot {boot})", flush=True)
                continue
            (rd / "exit.json").write_text(json.dumps({"code": code, "time": time.time()}))
            print(f"[sim] device stopped with exit code {code}", flush=True)
            return code
    except PowerOff:
        if child is not None:
            child.kill()
            child.wait()
        print("[sim] powered off", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
