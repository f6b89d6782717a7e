# Device side of test_provision: provisioned simulated boards, each with the real
# credentials.py over its own /factory (the fctry partition, mounted read-only) and /data.
# Each accepts its own label password and no other board's; the TLS stack takes its DER key
# and certificate; after an owner change and a factory reset its own password applies again.
# Usage: micropython credentials_factory.py BLOCKLIST < {"boards": [{"dir", "password"}]}
import json
import ssl
import sys
import vfs

import flash
from credentials import CredentialError, Credentials

blocklist = sys.argv[1]
boards = json.loads(sys.stdin.read())["boards"]
passwords = [b["password"] for b in boards]
NOW = 1000000

for i, board in enumerate(boards):
    fl = flash.Flash(board["dir"] + "/flash.bin")
    flash.mount_factory(fl)
    flash.mount_data(fl)
    with open("/factory/identity.json") as f:
        ident = json.loads(f.read())
    assert ident["product"] == "iot-thermostat" and ident["board"] == "unix", ident
    try:
        open("/factory/x", "w")
        raise AssertionError("factory data writable")
    except OSError:
        pass

    # The device identity loads into the TLS stack as it is (DER key and certificate).
    with open("/factory/device.key.der", "rb") as f:
        key = f.read()
    with open("/factory/device.crt.der", "rb") as f:
        crt = f.read()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)

    c = Credentials("/factory/password.json", "/data/auth/password.json", blocklist)
    own = board["password"]
    assert not c.owner_set()
    for j, pw in enumerate(passwords):
        assert c.verify(pw) == (i == j), (i, j)
    assert not c.verify(own.replace("-", ""))
    assert not c.verify(own.upper())
    assert c.login(own, NOW)

    # The owner's password replaces the label's...
    new = "correct horse battery staple %d" % i
    c.change(own, new, NOW)
    assert c.owner_set() and c.verify(new) and not c.verify(own)
    for pw in passwords:
        assert not c.verify(pw)
    # ...and survives a reboot (a new instance)...
    c = Credentials("/factory/password.json", "/data/auth/password.json", blocklist)
    assert c.verify(new) and not c.verify(own)
    # ...until a factory reset: then this device's own password, never a shared one.
    assert c.factory_reset()
    assert not c.owner_set()
    for j, pw in enumerate(passwords):
        assert c.verify(pw) == (i == j), (i, j)
    assert not c.verify(new)
    try:
        c.change("wrong-password", "another good one", NOW)
        raise AssertionError("changed with a wrong password")
    except CredentialError as e:
        assert e.code == "WRONG_PASSWORD"

    vfs.umount("/factory")
    vfs.umount("/data")
    fl.close()
print("OK", len(boards))
