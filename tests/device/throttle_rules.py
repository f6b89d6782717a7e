# Device side of test_throttle: the login throttle of throttle.py through Credentials, with
# client addresses: a stranger's failures never close the owner's address, the hourly ceiling
# over all addresses, the NIST SP 800-63B cap of 100 consecutive failures, the presence
# window of the button, the bounded address table, persistence and an unreadable record.
# Usage: micropython throttle_rules.py WORKDIR  (prints OK)
import json
import os
import sys

import credentials as cr
import throttle as th
from credentials import CredentialError, Credentials

work = sys.argv[1]
PW = "k7pq-m2wx-9dfh-tr4e"
os.mkdir(work + "/factory")
with open(work + "/factory/password.json", "w") as f:
    f.write(json.dumps(cr.make_record(PW, 2)))  # the iteration count is not the point here
state = work + "/data/auth/throttle.json"
OWNER, STRANGER = "192.168.1.20", "192.168.1.66"


def fresh():
    return Credentials(work + "/factory/password.json", work + "/data/auth/password.json")


def throttled(c, pw, now, client):
    try:
        c.login(pw, now, client)
    except CredentialError as e:
        assert e.code == "THROTTLED", e.code
        return e.retry_after
    raise AssertionError("not throttled: %s at %d" % (client, now))


def hammer(c, client, now, until):
    """Guess as fast as the throttle lets `client`; returns (failures, time)."""
    n = 0
    while now < until:
        wait = c.next_attempt_in(now, client)
        if wait:
            assert throttled(c, "guess", now, client) == wait
            now += wait
            continue
        assert c.login("guess %d" % n, now, client) is False
        n += 1
    return n, now


# --- One stranger, an hour of guessing: slowed to 13 guesses, the owner unaffected.
assert (th.HOURLY_CEILING, th.MAX_CONSECUTIVE, th.LOCKOUT_AFTER, th.LOCKOUT_S) == (30, 100,
                                                                                 10, 900)
c = fresh()
T = 1000000
n, now = hammer(c, STRANGER, T, T + 3600)
assert n == 13, n  # 10 in the first 183 s, then one per 15 minutes
assert c.login("guess", now, STRANGER) is False and c.failures == 14
assert c.next_attempt_in(now, STRANGER) == 900 and c.next_attempt_in(now, OWNER) == 0
assert c.login(PW, now, OWNER) is True  # the owner, from their own address: in
assert c.failures == 0  # the account's consecutive count is cleared...
assert c.next_attempt_in(now, STRANGER) > 0  # ...the stranger's own wait is not
# The record survives a reboot, per address.
c = fresh()
assert c.next_attempt_in(now, STRANGER) > 0 and c.next_attempt_in(now, OWNER) == 0

# --- Many addresses together reach the hourly ceiling; then every address waits for the hour
# to end, and only a presence window lets the owner in before.
c.factory_reset()
c = fresh()
T = 2000000
guesses = 0
for i in range(2):
    guesses += hammer(c, "10.0.0.%d" % i, T, T + 250)[0]
assert guesses == 20, guesses  # 10 in the first 183 s of each
for i in range(2, 12):
    assert c.login("guess", T + 300, "10.0.0.%d" % i) is False
wait = throttled(c, PW, T + 300, OWNER)  # the ceiling: 30 in the hour
assert throttled(c, PW, T + 300, "10.0.0.99") == wait
assert wait == 3600 - 300, wait
assert throttled(c, PW, T + 3599, OWNER) == 1
assert c.login(PW, T + 3600, OWNER) is True  # the hour is over
# The presence window: a press of the button; then the owner's correct password is
# accepted even with the ceiling reached, and even from the stranger's address.
c.factory_reset()
c = fresh()
for i in range(4):
    hammer(c, "10.0.1.%d" % i, T, T + 250)
assert c.next_attempt_in(T + 300, OWNER) > 0 and c.next_attempt_in(T + 300, "10.0.1.0") > 0
c.presence(T + 300)
assert c.login(PW, T + 301, "10.0.1.0") is True
# ...but a window gives each address PRESENCE_TRIES checks, not a guessing run.
c.factory_reset()
c = fresh()
hammer(c, STRANGER, T, T + 250)
c.presence(T + 300)
for k in range(th.PRESENCE_TRIES):
    assert c.login("guess", T + 300 + k, STRANGER) is False
throttled(c, PW, T + 310, STRANGER)
assert c.login(PW, T + 310, OWNER) is True  # the owner's own address still has its tries
# The window closes PRESENCE_S after the press.
hammer(c, STRANGER, T + 400, T + 700)
c.presence(T + 1000)
throttled(c, PW, T + 1000 + th.PRESENCE_S + 1, STRANGER)

# --- NIST SP 800-63B: 100 consecutive failures (here from 40 addresses over 4 hours) lock
# password logins for everyone until a presence window; a success from the window reopens.
c.factory_reset()
c = fresh()
now = 3000000
addr = 0
while c.failures < th.MAX_CONSECUTIVE:
    client = "10.1.%d.%d" % (addr // 250, addr % 250)
    addr += 1
    if c.next_attempt_in(now, client):
        now += 60
        continue
    c.login("guess", now, client)
assert c.failures == th.MAX_CONSECUTIVE
later = now + 10 * 3600
assert c.next_attempt_in(later, "10.9.9.9") == th.LOCKOUT_S
throttled(c, PW, later, OWNER)
assert fresh().next_attempt_in(later, OWNER) == th.LOCKOUT_S  # kept across a reboot
c.presence(later)
assert c.login(PW, later + 5, OWNER) is True
assert c.failures == 0 and c.next_attempt_in(later + 5, "10.9.9.9") == 0

# --- The address table is bounded: the 17th address forgets the one whose wait ends first.
c.factory_reset()
c = fresh()
for i in range(th.MAX_CLIENTS + 1):
    c.login("guess", 4000000 + i, "10.2.0.%d" % i)
with open(state) as f:
    rec = json.loads(f.read())
assert len(rec["c"]) == th.MAX_CLIENTS and "10.2.0.0" not in rec["c"], rec
assert len(rec["c"]) == th.MAX_CLIENTS

# --- An unreadable record: every address is one failure from the lock-out; the right
# password still opens (a success clears it).
with open(state, "w") as f:
    f.write("{not json")
c = fresh()
assert c.next_attempt_in(5000000, OWNER) == 0
assert c.login("guess", 5000000, OWNER) is False
assert c.next_attempt_in(5000000, OWNER) == th.LOCKOUT_S
assert c.login(PW, 5000000, "10.3.0.1") is True
assert c.login("guess", 5000000, "10.3.0.2") is False
assert c.next_attempt_in(5000000, "10.3.0.2") == 0  # the first failure costs no wait again
print("OK")
