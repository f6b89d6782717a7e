"""`python -m bench -o bench.json`: run every benchmark and write one flat JSON object."""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (app, attack, boot, crypto, fleet, fuzz, mqtt, provision,  # noqa: E402
                   robustness, rollout)

SUITES = {"crypto": crypto.run, "boot": boot.run, "provision": provision.run, "app": app.run,
          "fleet": fleet.run, "mqtt": mqtt.run, "rollout": rollout.run, "attack": attack.run,
          "fuzz": fuzz.run, "robustness": robustness.run}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-o", "--output", default="bench.json")
    ap.add_argument("--only", choices=sorted(SUITES), action="append")
    args = ap.parse_args()
    report = {"machine": platform.machine(), "python": platform.python_version(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name in args.only or SUITES:
        t0 = time.monotonic()
        figures = SUITES[name]()
        report.update(figures)
        print(f"{name}: {json.dumps(figures)} ({time.monotonic() - t0:.1f} s)", flush=True)
    Path(args.output).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
