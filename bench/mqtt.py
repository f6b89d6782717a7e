"""Cloud-link round trips: the firmware's MQTT client on the unix port, mutual TLS, loopback.

A real mosquitto (tests/mosquitto.py, client certificates required) and the device agent
(tests/device/mqtt_agent.py) running the firmware's Link. Figures, medians in ms:
- mqtt_publish_rtt_ms: a QoS 1 PUBLISH until its PUBACK;
- mqtt_echo_rtt_ms: a QoS 0 PUBLISH until the broker delivers it back to our subscription.
On the unix port every wait on a TLS socket costs ~1 ms (its poll steps non-file streams in
1 ms ticks), so these figures are dominated by the simulator, not by the client or TLS.
"""

import json
import os
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path

from host_tools import mpy

REPO = Path(__file__).resolve().parent.parent
AGENT = REPO / "tests" / "device" / "mqtt_agent.py"


def _events(proc):
    for line in proc.stdout:
        yield json.loads(line)
    raise RuntimeError("agent exited: %s" % proc.stderr.read())


def run(n=50):
    from tests.mosquitto import Broker  # needs `mosquitto` installed (apt-get install mosquitto)

    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp, \
            Broker(Path(tmp) / "broker") as b:
        cfg = Path(tmp) / "agent.json"
        cfg.write_text(json.dumps({
            "host": b.address, "server_hostname": b.host, "port": b.port, "ca": str(b.ca_der),
            "cert": str(b.client["cert_der"]), "key": str(b.client["key_der"]),
            "client_id": b.client["name"], "backoff": {"initial_window_ms": 0}}))
        env = dict(os.environ, MICROPYPATH=mpy.device_path("unix", [REPO / "firmware"]))
        proc = subprocess.Popen([mpy.micropython_path(), str(AGENT), str(cfg)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        watchdog = threading.Timer(120, proc.kill)  # a hung agent ends the run, not the bench
        watchdog.start()
        try:
            events = _events(proc)
            while next(events)["ev"] != "up":
                pass
            proc.stdin.write(json.dumps({"cmd": "rtt", "n": n}) + "\n")
            proc.stdin.flush()
            r = next(e for e in events if e["ev"] in ("rtt", "error"))
            if r["ev"] == "error":
                raise RuntimeError(r)
        finally:
            watchdog.cancel()
            proc.kill()
            proc.wait()
    return {
        "mqtt_publish_rtt_ms": round(statistics.median(r["puback_us"]) / 1000, 3),
        "mqtt_publish_rtt_p90_ms": round(sorted(r["puback_us"])[int(0.9 * n)] / 1000, 3),
        "mqtt_echo_rtt_ms": round(statistics.median(r["echo_us"]) / 1000, 3),
    }


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(REPO))
    print(json.dumps(run(), indent=2))
