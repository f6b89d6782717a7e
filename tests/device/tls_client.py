# Device side of test_tls: the device's client TLS context (bootloader/tlsctx.py, what the
# cloud link, the update download and the alert use) against a host server on 127.0.0.1.
# Prints one JSON line: {"cipher": [suite, version]} or {"error": "..."}.
#   micropython tls_client.py PORT SERVER_NAME CA_DER
import json
import socket
import sys

import tlsctx

port, name, ca_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(ca_path, "rb") as f:
    ctx = tlsctx.client(f.read())
s = socket.socket()
s.settimeout(10)
s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
try:
    t = ctx.wrap_socket(s, server_hostname=name)
    t.write(b"ping")
    out = {"cipher": list(t.cipher()), "read": t.read(4).decode()}
    t.close()
except (OSError, ValueError) as e:
    out = {"error": repr(e)}
    s.close()
print(json.dumps(out))
