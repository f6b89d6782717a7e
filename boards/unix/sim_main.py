# Power-on entry of the simulated board: mount flash, run the boot stage, then the verified app
# or alert-only mode.   micropython sim_main.py SIMDIR BOOT_NUMBER
import json
import os
import sys
import time

import alertmode
import bootstage
import flash
import simctl
from hal import Hal
from simtool import sim_config


class SimBoard(Hal):
    """The simulated board plus what the sim host watches: the boot report and the inbox."""

    def __init__(self, simdir, boot_number):
        super().__init__(simdir)
        self.simdir = simdir
        self.boot_number = boot_number
        self.channel = simctl.Channel(simdir + "/run")

    def report(self, boot, mode):
        """Publish the boot decision for `iotctl sim status` (atomic write)."""
        st = boot.state() if boot.anchors else {}
        doc = {"boot": self.boot_number, "mode": mode, "slot": boot.slot,
               "version": boot.version, "trial": boot.trial, "last": st.get("last", ""),
               "reasons": boot.reasons, "time": time.time()}
        path = self.simdir + "/run/device.json"
        with open(path + ".tmp", "w") as f:
            f.write(json.dumps(doc))
        os.rename(path + ".tmp", path)

    def services(self, boot):
        """Board tasks the application runs beside its own: the simulator's service channel."""
        return [simctl.serve(boot, self.channel)]


def log(msg):
    print("[device] " + msg)


def main(simdir, boot_number):
    board = SimBoard(simdir, boot_number)
    fl = board.flash
    flash.mount_factory(fl)
    flash.mount_data(fl)
    boot = bootstage.start(board, sim_config(), log)
    if boot.slot is None:
        alertmode.run(boot, board.channel)
    board.report(boot, "normal")
    boot.run_app()


main(sys.argv[1], int(sys.argv[2]))
