# Offline service tool of the simulated board (the stand-in for a factory/service jig):
# runs the device's own installer against the flash image while the device is off.
#   micropython servicejig.py SIMDIR factory|install BUNDLE   -> one JSON line on stdout
import json
import sys

import bootstage
import flash
import verdicts
from bundle import Reject


class _NoHal:
    def reset(self):
        pass


def main(argv):
    simdir, op, path = argv[1], argv[2], argv[3]
    fl = flash.Flash(simdir + "/" + flash.board_config()["sim"]["image"])
    flash.mount_factory(fl)
    flash.mount_data(fl)
    profile = sim_config()
    anchors, floor = bootstage.load_anchors(profile["anchors"])
    boot = bootstage.Boot(_NoHal(), profile, anchors, floor, bytearray(bootstage.BUF_SIZE),
                          lambda msg: None)
    try:
        with open(path, "rb") as f:
            v = boot.install_stream(f, factory=(op == "factory"))
    except Reject as e:
        return {"ok": False, "verdict": e.verdict, "text": e.detail}
    return {"ok": True, "text": "installed", "version": v.manifest["version"],
            "slot": "a" if op == "factory" else boot.state()["pending"]}


def sim_config():
    """The boot profile (bootstage.Boot.profile) of the simulated board (shared with unixboard)."""
    board = flash.board_config()
    with open(board["factory_mount"] + "/identity.json") as f:
        ident = json.loads(f.read())
    return {"board": board["board"], "product": ident["product"],
            "capacity": board["slot_capacity"], "root": board["data_mount"],
            "anchors": board["factory_mount"] + "/anchors.json",
            "factory": board["factory_mount"], "regions": flash.mounted_regions()}


def power_on(fl):
    """Mount /factory and /data and read the boot profile. Returns (profile, problems):
    what cannot be mounted or read is a problem the boot stage turns into alert-only mode
    (never a crash before it runs, never a format of data that cannot be read)."""
    problems = []
    for what, mount in (("factory data", flash.mount_factory), ("data filesystem",
                                                                 flash.mount_data)):
        try:
            mount(fl)
        except OSError as e:
            problems.append("%s cannot be mounted (%r)" % (what, e))
    try:
        return sim_config(), problems
    except (OSError, ValueError, KeyError) as e:
        problems.append("factory record unreadable (%r)" % (e,))
        board = flash.board_config()
        return {"board": board["board"], "product": "", "capacity": 0,
                "root": board["data_mount"], "anchors": board["factory_mount"] + "/anchors.json",
                "factory": board["factory_mount"]}, problems


if __name__ == "__main__":
    try:
        result = main(sys.argv)
    except (OSError, ValueError, KeyError) as e:
        result = {"ok": False, "verdict": verdicts.IO_ERROR, "text": "device storage: %r" % (e,)}
    print(json.dumps(result))
