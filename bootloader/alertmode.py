# Alert-only mode: no slot verified. Signal locally, send one alert to the configured cloud
# endpoint (cloudalert.py: one connection, one message, once per distinct failure), start no
# other network connection and no control, accept only a signed recovery bundle through the
# board's recovery channel.
import time

import cloudalert
from bundle import Reject
from station import Uplink

PATTERN = "alert"  # fast triple blink, then a pause: distinct from every normal LED state


def banner(boot):
    why = "; ".join(boot.reasons) or "no slot verified"
    return "ALERT-ONLY MODE: integrity check failed (%s). Network and control disabled." % why


def run(boot, channel, poll_ms=200):
    """Loop forever in alert-only mode. `channel.poll()` returns a recovery request (with
    .stream, .reply(ok, text), .close()) or None; a bundle that verifies is installed and the
    device restarts into it."""
    hal = boot.hal
    hal.led.pattern(PATTERN)
    boot.log(banner(boot))
    hal.report(boot, "alert-only")
    alert = cloudalert.Alert(boot, Uplink(boot))  # the Wi-Fi station only for the alert
    while True:
        alert.poll()  # sends when due, until the broker has acknowledged this failure
        req = channel.poll()
        if req is not None:
            try:
                v = boot.install_stream(req.stream)
            except (Reject, OSError) as e:
                boot.log("recovery bundle refused: %s" % e)
                req.reply(False, str(e))
            else:
                boot.log("recovery bundle %s installed; restarting" % v.manifest["version"])
                req.reply(True, v.manifest["version"])
                hal.reset()
            finally:
                req.close()
        time.sleep_ms(poll_ms)
