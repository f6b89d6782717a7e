# The device's certificate reading and renewal checks (firmware/certrenew.py) for
# tests/host/test_renewal.py: argv[1] holds JSON lines {"op": "fields", "der": hex} or
# {"op": "check", "cur": hex, "new": base64 text}; prints one JSON result per line.
import binascii
import json
import sys

import certrenew

with open(sys.argv[1]) as f:
    for line in f:
        doc = json.loads(line)
        try:
            if doc["op"] == "fields":
                r = certrenew.fields(binascii.unhexlify(doc["der"]))
                out = {"not_before": r["not_before"], "not_after": r["not_after"],
                       "spki": binascii.hexlify(r["spki"]).decode(),
                       "subject": binascii.hexlify(r["subject"]).decode(),
                       "due": [certrenew.due(r, t) for t in doc["at"]]}
            else:
                cur = certrenew.fields(binascii.unhexlify(doc["cur"]))
                out = binascii.hexlify(certrenew.check(cur, doc["new"])).decode()
        except ValueError as e:
            out = "ValueError: " + str(e)
        print(json.dumps(out))
