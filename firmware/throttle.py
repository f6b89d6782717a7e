# Login throttling that keeps guessing slow without handing the owner's door to a stranger.
#
# Three limits, all on failed password checks:
# - per client (network address): wait DELAYS[k-1] s after its k-th consecutive failure,
#   from LOCKOUT_AFTER failures on, LOCKOUT_S after every further one. One address gets
#   at most 13 guesses in its first hour and 4 an hour after that;
# - per device: at most HOURLY_CEILING failures in an hour from all addresses together,
#   more than one address can reach alone, so a stranger alone never closes the owner's door;
# - per account: MAX_CONSECUTIVE (NIST SP 800-63B: at most 100) consecutive failures lock
#   password logins until someone proves physical presence.
# Physical presence (a press of the device's button) opens a window of PRESENCE_S in
# which every address may have PRESENCE_TRIES checks whatever the limits say: the owner,
# standing at the device, gets in during an attack. A success clears its address and the
# consecutive count. Persisted (write-temp-then-rename) across reboots; the presence window
# is not. Time (`now`, seconds) is passed in. Numbers and rationale: docs/interfaces.md.
import json

from micropython import const

import store

DELAYS = (0, 1, 2, 4, 8, 16, 32, 60, 60)
LOCKOUT_AFTER = const(10)
LOCKOUT_S = const(900)
HOURLY_CEILING = const(30)
HOUR_S = const(3600)
MAX_CONSECUTIVE = const(100)
MAX_CLIENTS = const(16)  # addresses remembered; the global ceiling covers what is forgotten
PRESENCE_S = const(120)
PRESENCE_TRIES = const(3)  # per address and window: the owner's typos, not a guessing run


def delay_for(failures):
    """Seconds one address waits after `failures` consecutive failures."""
    if failures <= 0:
        return 0
    if failures >= LOCKOUT_AFTER:
        return LOCKOUT_S
    return DELAYS[failures - 1]


def _ceil(wait):
    whole = int(wait)
    return whole if whole >= wait else whole + 1


class Throttle:
    """The counters behind Credentials.login. `path` holds them between reboots."""

    def __init__(self, path):
        self.path = path
        self._presence = None  # [opened at, {address: checks used}] while a window is open
        self._load()

    def _load(self):
        self.clients = {}  # address -> [consecutive failures, not before]
        self.consecutive = 0
        self.hour = [0, 0]  # [start of the hour window, failures in it]
        self._start = 0  # where the count of an address not in `clients` starts
        try:
            with open(self.path) as f:
                doc = json.load(f)
        except OSError:
            return  # no record: no failures
        except ValueError:
            doc = None
        try:
            if "failures" in doc:  # the record of the per-device throttle it replaces
                self.consecutive = int(doc["failures"])
                self.clients[None] = [self.consecutive, doc["until"]]
            else:
                self.consecutive = int(doc.get("n", 0))
                self.hour = [doc["h"][0], int(doc["h"][1])] if "h" in doc else [0, 0]
                for k, v in doc.get("c", {}).items():
                    self.clients[None if k == "" else k] = [int(v[0]), v[1] + 0]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            # An unreadable counter (it is replaced atomically, so this is a fault) counts
            # as a locked one for every address: the next failure locks, a success clears.
            self.clients = {}
            self.consecutive = LOCKOUT_AFTER
            self._start = LOCKOUT_AFTER - 1

    def _save(self):
        if not (self.consecutive or self.clients or self.hour[1]):
            store.remove(self.path)
            return
        store.makedirs(self.path.rsplit("/", 1)[0])
        store.save(self.path, {"n": self.consecutive, "h": self.hour,
                               "c": {"" if k is None else k: v
                                     for k, v in self.clients.items()}})

    # --- the limits ---------------------------------------------------------------------

    def _client_wait(self, client, now):
        c = self.clients.get(client)
        if c is None:
            return 0
        cap = delay_for(c[0])
        wait = c[1] - now
        if wait > cap:
            # The clock went back (e.g. a reboot before the time was set): restart the
            # window from now rather than wait out a date in the future.
            c[1] = now + cap
            self._save()
            wait = cap
        return wait

    def _hour_wait(self, now):
        start, n = self.hour
        if now < start or now - start >= HOUR_S:
            return 0
        return start + HOUR_S - now if n >= HOURLY_CEILING else 0

    def wait(self, client, now):
        """Whole seconds until `client` may try a password (0: now). After MAX_CONSECUTIVE
        failures: LOCKOUT_S, renewed until a presence window opens the account."""
        if self.consecutive >= MAX_CONSECUTIVE:
            return LOCKOUT_S
        w = max(self._client_wait(client, now), self._hour_wait(now))
        return _ceil(w) if w > 0 else 0

    def present(self, client, now):
        """True if a presence window is open and `client` has checks left in it."""
        p = self._presence
        if p is None:
            return False
        if not 0 <= now - p[0] <= PRESENCE_S:
            self._presence = None
            return False
        return p[1].get(client, 0) < PRESENCE_TRIES

    def open_presence(self, now):
        """The owner pressed the button: open a window of PRESENCE_S seconds."""
        self._presence = [now, {}]

    def admit(self, client, now):
        """0 if `client` may have a password checked now, else the seconds to wait. Uses
        one of the client's presence checks if that is what lets it in."""
        w = self.wait(client, now)
        if w and self.present(client, now):
            used = self._presence[1]
            if len(used) < MAX_CLIENTS or client in used:
                used[client] = used.get(client, 0) + 1
                return 0
        return w

    def failed(self, client, now):
        self.consecutive += 1
        start, n = self.hour
        self.hour = [start, n + 1] if 0 <= now - start < HOUR_S else [now, 1]
        c = self.clients.get(client)
        if c is None:
            if len(self.clients) >= MAX_CLIENTS:
                # Forget the address whose wait ends first: the least to lose.
                del self.clients[min(self.clients, key=lambda k: self.clients[k][1])]
            c = self.clients[client] = [self._start, 0]
        c[0] += 1
        c[1] = now + delay_for(c[0])
        self._save()

    def succeeded(self, client):
        self._start = 0
        if self.consecutive or client in self.clients:
            self.consecutive = 0
            self.clients.pop(client, None)
            self._save()

    def clear(self):
        """Forget everything (factory reset)."""
        self.clients = {}
        self.consecutive = 0
        self.hour = [0, 0]
        self._start = 0
        self._presence = None
        self._save()
