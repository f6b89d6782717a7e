# Power-loss sweep (mcuboot's perm_with_fails, on the simulated NOR flash): run an update
# scenario once to count its flash operations, then for every operation n, restore the image,
# cut the power at n, reboot, and require a verified boot.
#   micropython powerloss.py TEMPLATE.bin WORK.bin BUNDLE update|rollback NEW_VERSION OLD_VERSION
# prints one JSON line: {kind, cut_points, first, final, outcomes, failures}. Both scenarios
# share their start (install, reboot into the trial): the same operations on the same image,
# so the rollback sweep starts where they part (`first`); the update sweep cuts them all.
import json
import sys


import bootstage
import flash
from flash import PowerCut
from servicejig import sim_config


class Reset(Exception):
    pass


class NoHal:
    def reset(self):
        raise Reset()


def _quiet(msg):
    pass


def mount(fl):
    flash.mount_factory(fl)
    flash.mount_data(fl)


def boot(fl):
    flash.unmount()
    mount(fl)
    return bootstage.start(NoHal(), sim_config(), _quiet)


def scenario(fl, bundle_path, kind):
    b = boot(fl)
    with open(bundle_path, "rb") as f:
        b.install_stream(f)
    b = boot(fl)  # reboot into the trial
    assert b.trial, "update did not boot as a trial"
    if kind == "common":
        pass
    elif kind == "update":
        b.confirm()
    else:
        try:
            b.rollback("self-test failed (simulated)")
        except Reset:
            pass
        b = boot(fl)
        assert not b.trial and b.slot is not None
    flash.unmount()


def check(work, allowed):
    """Reboot after the cut (twice: the second boot must agree) and return the outcome."""
    fl = flash.Flash(work)
    try:
        b = boot(fl)
        if b.slot is None:
            return "UNBOOTABLE: " + "; ".join(b.reasons)
        if b.version not in allowed:
            return "WRONG VERSION " + str(b.version)
        outcome = "%s%s" % (b.version, " trial" if b.trial else "")
        if b.trial:
            b.confirm()
        b2 = boot(fl)
        if b2.slot is None:
            return "UNBOOTABLE ON SECOND BOOT: " + "; ".join(b2.reasons)
        return outcome
    finally:
        flash.unmount()
        fl.close()


def main(template, work, bundle_path, kind, new_version, old_version):
    flash.copy_image(template, work)
    fl = flash.Flash(work)
    scenario(fl, bundle_path, "common")
    common = fl.ops
    fl.close()
    flash.copy_image(template, work)
    fl = flash.Flash(work)
    scenario(fl, bundle_path, kind)
    total = fl.ops
    fl.close()
    final = check(work, (new_version, old_version))
    first = 1 if kind == "update" else common + 1
    outcomes = {}
    failures = []
    for n in range(first, total + 1):
        flash.copy_image(template, work)
        fl = flash.Flash(work)
        fl.cut_at(n)
        try:
            scenario(fl, bundle_path, kind)
            failures.append("cut %d: scenario finished without the power cut" % n)
        except PowerCut:
            pass
        flash.unmount()
        fl.close()
        outcome = check(work, (new_version, old_version))
        if outcome.startswith("UNBOOTABLE") or outcome.startswith("WRONG"):
            failures.append("cut %d: %s" % (n, outcome))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"kind": kind, "cut_points": total - first + 1, "first": first, "final": final,
            "outcomes": outcomes, "failures": failures}


print(json.dumps(main(*sys.argv[1:7])))
