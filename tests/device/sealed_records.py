# Device side of test_sealed: records sealed with the device key (sealed.py, store.py).
# Round trip through store; no plaintext in the file; a flipped bit, a record moved to another
# path, another device's key and a truncated file are all refused; unsealed directories stay
# plain JSON; the set-up AP passphrase is the host's. Usage: micropython sealed_records.py DIR
import json
import os
import sys

import sealed
import store

work = sys.argv[1]
secret = bytes(range(32))
other = bytes(range(1, 33))
store.makedirs(work + "/data/auth")
store.makedirs(work + "/data/privacy")
store.makedirs(work + "/data/slots")

# HMAC-SHA256 against RFC 4231 test case 2.
tag = sealed.hmac_sha256(b"Jefe", b"what do ya want ", b"for nothing?")
assert tag.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", tag

s = sealed.Sealer(secret, work + "/data")
store.use(s)
rec = {"name": "Zyxwvut Sommerhaus 7", "wifi": "Correct-Horse-Battery-9"}
path = work + "/data/privacy/profile.json"
store.save(path, rec)
with open(path, "rb") as f:
    raw = f.read()
assert raw[:3] == sealed.MAGIC and b"Sommerhaus" not in raw and b"Correct" not in raw, raw
assert store.load(path) == rec
store.save(path, rec)  # a fresh IV on every write: the same record never seals the same
with open(path, "rb") as f:
    assert f.read() != raw
assert "profile.json.tmp" not in os.listdir(work + "/data/privacy")

# Every change of the sealed bytes is refused, and store.load gives the default.
for i in (0, 5, 20, len(raw) // 2, len(raw) - 1):
    bad = bytearray(raw)
    bad[i] ^= 1
    with open(path, "wb") as f:
        f.write(bad)
    assert store.load(path, "default") == "default", i
    try:
        store.read(path)
        raise AssertionError("flipped byte %d accepted" % i)
    except ValueError:
        pass
for cut in (0, 3, 19, 35, len(raw) - 1):
    try:
        s.open(path, raw[:cut])
        raise AssertionError("truncated record accepted")
    except ValueError:
        pass
# Bound to its path: the same bytes under another name are refused.
moved = work + "/data/auth/password.json"
with open(moved, "wb") as f:
    f.write(raw)
assert store.load(moved) is None
# Bound to the device: another device's key refuses it.
assert s.open(path, raw) == json.dumps(rec).encode()
try:
    sealed.Sealer(other, work + "/data").open(path, raw)
    raise AssertionError("another key opened the record")
except ValueError:
    pass
# A plain JSON record where a sealed one must be is refused (no downgrade to plaintext).
with open(moved, "w") as f:
    f.write('{"alg": "pbkdf2-sha256", "hash": "00"}')
assert store.load(moved) is None

# Outside the sealed directories (e.g. the slots' signed files) records stay plain JSON.
plain = work + "/data/slots/notice.json"
store.save(plain, {"a": 1})
with open(plain) as f:
    assert json.loads(f.read()) == {"a": 1}
assert store.load(plain) == {"a": 1}
assert not s.covers(work + "/data/.erase") and s.covers(work + "/data/app/wifi.json")

# Lengths: every padding length round-trips.
for n in range(0, 40):
    doc = "x" * n
    store.save(path, doc)
    assert store.load(path) == doc, n

# Keys from the factory record: missing or malformed -> None (records stay plain).
os.mkdir(work + "/factory")
assert sealed.from_factory(work + "/factory", work + "/data") is None
with open(work + "/factory/secret.bin", "wb") as f:
    f.write(secret[:16])
assert sealed.from_factory(work + "/factory", work + "/data") is None
with open(work + "/factory/secret.bin", "wb") as f:
    f.write(secret)
assert sealed.from_factory(work + "/factory", work + "/data").open(path, s.seal(path, "x")) == b"x"
# The cloud link's queue (outbox.py) in the privacy directory: entries sealed, read back whole.
from outbox import Outbox  # noqa: E402

ob = Outbox(work + "/data/privacy/outbox")
seq = ob.put("telemetry/p/x", {"temperature": 21.5, "target": 20.0}, "t")
names = [n for n in os.listdir(work + "/data/privacy/outbox") if n.endswith(".t")]
with open(work + "/data/privacy/outbox/" + names[0], "rb") as f:
    raw = f.read()
assert raw[:3] == sealed.MAGIC and b"temperature" not in raw and b"telemetry/" not in raw
got = ob.peek()
assert got[:2] == (seq, "telemetry/p/x") and json.loads(got[2]) == {
    "temperature": 21.5, "target": 20.0, "seq": 1}, got
print("AP", sealed.ap_passphrase(secret))
print("SEALED-OK")
