# Power-loss sweep of a pulled download (firmware/pullstate.py's Download over the boot
# stage's installer) on the strict NOR flash model: run the download once to count its flash
# operations; then for every STRIDE-th operation n: restore the image, cut the power at n,
# reboot, resume the download (the bundle from the byte the device asks for, as an HTTP
# Range would give it) and require a verified trial of the new version. Each cut's bytes
# (before the cut plus after it) must stay under twice the bundle. A last run cuts the
# power again and again, every EVERY operations, until the download completes.
#   micropython pull_powercut.py TEMPLATE.bin WORK.bin BUNDLE SHA256 VERSION STRIDE EVERY
import json
import sys

import bootstage
import flash
import pullstate
import store
import updater
from bundle import Reject
from flash import PowerCut
from servicejig import sim_config

CHUNK = 4096  # what one network read brings (the puller's 4 KiB buffer)


class NoHal:
    def reset(self):
        raise RuntimeError("reset")


def _quiet(msg):
    pass


def boot(fl):
    flash.unmount()
    flash.mount_factory(fl)
    flash.mount_data(fl)
    return bootstage.start(NoHal(), sim_config(), _quiet)


def download(fl, bundle_path, sha, fetched):
    """One boot's download: returns where it started. fetched[0] counts the bytes read from
    the 'network', also those a cut then lost."""
    b = boot(fl)
    store.makedirs(b.root + "/app")
    up = updater.Updater(b, bytearray(CHUNK), lambda: 0)  # the clock unset: no expiry check
    dl = pullstate.Download(updater.Session(up), b.root, sha)
    start = dl.got
    buf = bytearray(CHUNK)
    with open(bundle_path, "rb") as f:
        f.seek(dl.got)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            fetched[0] += n
            dl.feed(memoryview(buf)[:n])
    dl.finish()
    dl.close(False)
    flash.unmount()
    return start


def outcome(work, version):
    fl = flash.Flash(work)
    try:
        b = boot(fl)
        if b.slot is None:
            return "UNBOOTABLE: " + "; ".join(b.reasons)
        return "%s%s" % (b.version, " trial" if b.trial else "")
    finally:
        flash.unmount()
        fl.close()


def main(template, work, bundle_path, sha, version, stride, every):
    stride, every = int(stride), int(every)
    with open(bundle_path, "rb") as f:
        size = f.seek(0, 2)
    flash.copy_image(template, work)
    fl = flash.Flash(work)
    fetched = [0]
    download(fl, bundle_path, sha, fetched)
    total = fl.ops
    fl.close()
    want = version + " trial"
    final = outcome(work, version)
    failures = [] if final == want else ["uncut download ends in %s" % final]
    cuts = resumed = committed = 0
    worst = 0
    for n in range(1, total + 1, stride):
        flash.copy_image(template, work)
        fl = flash.Flash(work)
        fl.cut_at(n)
        fetched = [0]
        try:
            download(fl, bundle_path, sha, fetched)
            failures.append("cut %d: the download finished without the power cut" % n)
        except PowerCut:
            pass
        flash.unmount()
        fl.close()
        cuts += 1
        fl = flash.Flash(work)
        try:
            start = download(fl, bundle_path, sha, fetched)
            resumed += start > 0
        except Reject as e:
            flash.unmount()
            if e.verdict != "BUSY":  # BUSY: the cut came after the commit; the trial is due
                failures.append("cut %d: resume refused: %r" % (n, e))
            else:
                committed += 1
        except Exception as e:  # the sweep reports every failure, whatever it is
            failures.append("cut %d: resume failed: %r" % (n, e))
            flash.unmount()
            fl.close()
            continue
        fl.close()
        worst = max(worst, fetched[0])
        if fetched[0] >= 2 * size:
            failures.append("cut %d: %d bytes fetched for a %d-byte bundle" % (n, fetched[0], size))
        got = outcome(work, version)
        if got != want:
            failures.append("cut %d: %s" % (n, got))
    # Cut after cut: every EVERY operations, until one boot's download completes.
    flash.copy_image(template, work)
    fetched = [0]
    repeated = 0
    while repeated < 100:
        fl = flash.Flash(work)
        fl.cut_at(every)
        try:
            download(fl, bundle_path, sha, fetched)
            fl.close()
            break
        except PowerCut:
            repeated += 1
            flash.unmount()
            fl.close()
        except Reject as e:  # BUSY: the last cut came after the commit; the trial is due
            flash.unmount()
            fl.close()
            if e.verdict != "BUSY":
                failures.append("repeated cuts: resume refused: %r" % (e,))
            break
    got = outcome(work, version)
    if got != want:
        failures.append("repeated cuts: %s after %d cuts" % (got, repeated))
    return {"cut_points": total, "cuts": cuts, "resumed": resumed, "committed": committed,
            "size": size,
            "worst_fetched": worst, "repeated_cuts": repeated, "repeated_fetched": fetched[0],
            "failures": failures}


print(json.dumps(main(*sys.argv[1:8])))
