# Device side of test_mqtt's property tests: a decode server, one process for a whole batch.
# Reads lines "MAX_PACKET HEX" on stdin (HEX "-" is no bytes); answers one JSON line each:
#   {"p": [type, fields...], "used": n}  a packet (bytes fields in hex)
#   {"none": 1}                         incomplete input
#   {"err": "..."}                      ProtocolError
#   {"crash": "..."}                    anything else: always a bug
import json
import sys
from binascii import hexlify, unhexlify

import mqtt


def _field(x):
    return hexlify(x).decode() if isinstance(x, (bytes, bytearray)) else x


def answer(line):
    limit, data = line.split()
    try:
        r = mqtt.decode(b"" if data == "-" else unhexlify(data), int(limit))
    except mqtt.ProtocolError as e:
        return {"err": str(e)}
    except Exception as e:  # the property under test: nothing else ever escapes
        return {"crash": "%s: %s" % (type(e).__name__, e)}
    if r is None:
        return {"none": 1}
    return {"p": [_field(x) for x in r[0]], "used": r[1]}


while True:
    line = sys.stdin.readline()
    if not line:
        break
    if line.strip():
        sys.stdout.write(json.dumps(answer(line)) + "\n")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()
