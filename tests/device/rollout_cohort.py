# The device's rollout rules (firmware/pullstate.py) for tests/host/test_rollout.py: reads
# JSON lines {"rollout": {...}, "device": id} on argv[1]'s file and prints, per line, whether
# the device takes part, or the ValueError an invalid rollout gives.
import json
import sys

import pullstate

with open(sys.argv[1]) as f:
    for line in f:
        doc = json.loads(line)
        try:
            r = pullstate.check_rollout(doc["rollout"])
            print(json.dumps(pullstate.in_cohort(r, doc["device"])))
        except ValueError as e:
            print(json.dumps("ValueError: " + str(e)))
