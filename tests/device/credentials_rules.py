# Device side of test_provision: PBKDF2 against known answers, the password-change rules,
# and login throttling (delays, lock-out, persistence across a reboot, clock going back).
# Usage: micropython credentials_rules.py WORKDIR BLOCKLIST < {"vectors": [...]}
import json
import os
import sys

import credentials as cr
import store
from credentials import CredentialError, Credentials

work, blocklist = sys.argv[1], sys.argv[2]
vectors = json.loads(sys.stdin.read())["vectors"]

# --- PBKDF2-HMAC-SHA256 equals the host's hashlib.pbkdf2_hmac (RFC 7914 / 8018 vectors too).
for v in vectors:
    pw = v["password"].encode()
    got = cr.pbkdf2_sha256(pw, v["salt"].encode(), v["iterations"])
    assert got.hex() == v["hash"], (v, got.hex())
assert cr.equal(b"abc", b"abc") and not cr.equal(b"abc", b"abd") and not cr.equal(b"a", b"ab")

# --- A factory record as the host writes it (low iteration count: the count is not the point).
ITER = 1000
FACTORY_PW = "k7pq-m2wx-9dfh-tr4e"
os.mkdir(work + "/factory")
with open(work + "/factory/password.json", "w") as f:
    f.write(json.dumps(cr.make_record(FACTORY_PW, ITER)))
data = work + "/data/auth"
owner = data + "/password.json"
state = data + "/throttle.json"


def fresh():
    return Credentials(work + "/factory/password.json", owner, blocklist)


def snapshot():
    out = {}
    for p in (work + "/factory/password.json", owner, state):
        try:
            with open(p, "rb") as f:
                out[p] = f.read()
        except OSError:
            out[p] = None
    return out


def refused(code, old, new, now):
    before = snapshot()
    fails = c.failures
    try:
        c.change(old, new, now)
    except CredentialError as e:
        assert e.code == code, (e.code, code)
        after = snapshot()
        for p in before:
            if p != state:
                assert after[p] == before[p], p  # nothing stored changed
        # Only a wrong old password counts as a failed attempt.
        assert c.failures == fails + (1 if code == "WRONG_PASSWORD" else 0)
        return
    raise AssertionError("accepted: " + new)


c = fresh()
T = 5000
refused("TOO_SHORT", FACTORY_PW, "abcdefg", T)  # 7 characters
refused("TOO_SHORT", FACTORY_PW, "", T)
refused("TOO_LONG", FACTORY_PW, "x" * 129, T)
refused("BLOCKLISTED", FACTORY_PW, "baseball", T)  # in the list, 8 characters
refused("BLOCKLISTED", FACTORY_PW, "BaseBall", T)  # the check ignores case
refused("BLOCKLISTED", FACTORY_PW, "password1", T)
refused("WRONG_PASSWORD", "k7pq-m2wx-9dfh-tr4f", "a fine new password", T)
assert c.failures == 1 and c.next_attempt_in(T) == 0  # the first failure costs no wait
# Accepted at the edges: 8 and 128 characters, no composition rules, any Unicode.
c.change(FACTORY_PW, "abcdefgh", T)
assert c.failures == 0  # the success cleared the counter
assert c.verify("abcdefgh") and not c.verify(FACTORY_PW)
c.change("abcdefgh", "y" * 128, T)
assert c.verify("y" * 128)
c.change("y" * 128, "\u00e9t\u00e9 \u00e0 la plage", T)  # 12 characters, 16 bytes
assert c.verify("\u00e9t\u00e9 \u00e0 la plage")
assert not c.verify("x" * 100000)  # oversized input: refused before hashing
rec = store.load_record(owner)[0]  # kept in two copies (store.save_record)
assert rec["alg"] == "pbkdf2-sha256" and rec["iterations"] == ITER and len(rec["salt"]) == 32
assert len(rec["hash"]) == 64
first_salt = rec["salt"]
c.change("\u00e9t\u00e9 \u00e0 la plage", "abcdefgh", T)
assert store.load_record(owner)[0]["salt"] != first_salt  # a fresh salt each time
assert c.factory_reset() and c.verify(FACTORY_PW) and not c.verify("abcdefgh")
assert not c.factory_reset()  # nothing left to remove; still the factory password
assert c.verify(FACTORY_PW)
assert "password.json.tmp" not in os.listdir(data)

# --- Throttling: 0, 1, 2, 4, ... 60 s after each consecutive failure, lock-out at 10.
c = fresh()
now = 100000
expect = [0, 1, 2, 4, 8, 16, 32, 60, 60, 900]
assert cr.LOCKOUT_AFTER == 10 and cr.LOCKOUT_S == 900
for k, wait in enumerate(expect):
    assert c.next_attempt_in(now) == 0
    assert c.login("wrong %d" % k, now) is False
    assert c.failures == k + 1
    assert c.next_attempt_in(now) == wait, (k, c.next_attempt_in(now), wait)
    if wait:
        # Too early: refused without a check and without counting.
        try:
            c.login(FACTORY_PW, now + wait - 1)
            raise AssertionError("not throttled")
        except CredentialError as e:
            assert e.code == "THROTTLED" and e.retry_after == 1, (e.code, e.retry_after)
        assert c.failures == k + 1
        assert c.next_attempt_in(now + wait) == 0
    now += wait

# A reboot (a new instance) keeps the counter and the lock-out.
now_locked = now
c.login("wrong again", now)
assert c.failures == 11 and c.next_attempt_in(now) == 900
c = fresh()
assert c.failures == 11 and c.next_attempt_in(now + 1) == 899
try:
    c.change(FACTORY_PW, "a fine new password", now + 1)
    raise AssertionError("change not throttled")
except CredentialError as e:
    assert e.code == "THROTTLED" and e.retry_after == 899
# A reboot before the clock is set (it reads years earlier) re-arms the window from then.
c = fresh()
assert c.next_attempt_in(10) == 900
assert c.next_attempt_in(500) == 410
c = fresh()
assert c.next_attempt_in(500) == 410
# Past the lock-out, every further failure locks again: at most 4 guesses an hour.
assert c.login("wrong", 910) is False and c.next_attempt_in(910) == 900
# The right password after the wait opens the door and clears the counter (file removed).
assert c.login(FACTORY_PW, 1810) is True
assert c.failures == 0 and c.next_attempt_in(1810) == 0
with open(state) as f:  # only the device's hourly count is left (throttle_rules.py)
    assert json.loads(f.read())["c"] == {}
c = fresh()
assert c.failures == 0
# Factory reset also clears the counter.
for k in range(3):
    c.login("wrong", 2000 + 100 * k)
assert c.failures == 3
c.factory_reset()
assert c.failures == 0 and fresh().failures == 0
print("OK")
