# Device side of test_mqtt_fuzz: the cloud link's command handler (firmware/cloud.py,
# Cloud.command, what a message on dev/<id>/cmd reaches) of a provisioned simulated device
# whose factory record names a broker, in-process on its verified slot, without connecting.
# The owner has allowed remote access (telemetry consent), so valid "set" commands apply.
# The host sends payloads as frames "<length>\n<bytes>"; the device answers one JSON line each:
#   {"ok": applied, "ev": [events the command produced], "c": stored state changed,
#    "x": crash or null, "s": thermostat settings afterwards}
# Stored state = every file on the data filesystem except the outbox (where the result event
# is queued: the command's answer) and the login throttle; it is hashed again whenever the
# flash saw a program or an erase besides queueing the answer. The rate limit (20 commands a
# minute) is lifted between fuzzed commands and checked on its own at the end: "RATE" frame
# -> {"refused_at": n}.
#   micropython mqtt_fuzz.py SIMDIR
import json
import sys

from fuzzio import device, digest, read_frame

_SKIP = ("throttle.json", "outbox")


def main(simdir):
    dev, fl = device(simdir)
    import cloud

    cfg = cloud.config(dev.identity)
    assert cfg, "the factory record names no broker"
    c = cloud.Cloud(dev, cfg)  # never started: no connection, the handler alone
    dev.cloud = c
    c.privacy.set_consents({"telemetry": True})
    events = []
    queue = c.event
    queued_ops = [0]  # flash operations spent queueing result events (the answer channel)

    def event(doc):
        events.append(dict(doc))
        ops = fl.ops
        queue(doc)
        queued_ops[0] += fl.ops - ops
    c.event = event
    state = digest("/data", _SKIP).digest()
    print(json.dumps({"ready": True, "settings": dev.thermostat.settings}))
    stdin = sys.stdin.buffer
    while True:
        payload = read_frame(stdin)
        if payload is None:
            break
        if payload == b"RATE":
            c._cmd_times = []
            n = 0
            while c.command(b'{"cmd": "check_update"}'):
                n += 1
            print(json.dumps({"refused_at": n + 1, "ev": events[-1:]}))
            continue
        c._cmd_times = []
        ops = fl.ops
        queued_ops[0] = 0
        del events[:]
        crash = ok = None
        try:
            ok = c.command(payload)
        except Exception as e:  # what the handler did not catch would end the link
            crash = repr(e)
        changed = False
        if fl.ops - ops != queued_ops[0]:  # it wrote more than its answer: compare
            now = digest("/data", _SKIP).digest()
            changed = now != state
            state = now
        print(json.dumps({"ok": ok, "ev": events, "c": changed, "x": crash,
                          "s": dev.thermostat.settings}))


main(sys.argv[1])
