# Device side of test_telemetry: two devices' records over two days at the real 5-minute
# period (telemetry.py). Usage: micropython telemetry_anon.py DIR
# Prints one JSON line per record: {"dev": 0|1, "topic", "doc"} (the host checks linkability).
import json
import os
import sys

import telemetry

work = sys.argv[1]
devs = []
for i, secret in enumerate((bytes(range(32)), bytes(range(7, 39)))):
    d = "%s/factory%d" % (work, i)
    os.mkdir(d)
    with open(d + "/secret.bin", "wb") as f:
        f.write(secret)
    devs.append(telemetry.Telemetry(d, "iot-thermostat"))
t0 = 1_800_000_000 - 1_800_000_000 % 86400  # midnight UTC
for n in range(2 * 288):
    for i, tel in enumerate(devs):
        t = t0 + n * 300 + 17 + 41 * i  # each device its own phase within the period
        rec = tel.record(20.0 + i + n / 1000, 21.0, n % 3 == 0, t)
        print(json.dumps({"dev": i, "topic": rec[0], "doc": rec[1]}))
# No wall clock, or no device secret: nothing is sent.
assert devs[0].record(20.0, 21.0, False, 0) is None
assert telemetry.Telemetry(work, "iot-thermostat").record(20.0, 21.0, False, t0) is None
# The period: 300 s +- 10 %, and not always the same.
pauses = [telemetry.Telemetry.period_ms(300) for _ in range(200)]
assert min(pauses) >= 270000 and max(pauses) <= 330000 and len(set(pauses)) > 50, pauses[:5]
print("TELEMETRY-OK")
