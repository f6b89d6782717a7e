# Sessions for the local API and pages: random tokens in HttpOnly/Secure/SameSite=Strict
# cookies with an expiry, a per-session CSRF token for every state-changing request, and
# throttled logins (per client address; the throttle lives in throttle.py and survives
# reboots). A request that proves to be the owner's keeps its connection slot (httpd).
import binascii
import os
import time

from micropython import const

from httpd import HTTPError
from sealed import equal

COOKIE = "sid"
SESSION_S = const(1800)  # idle expiry
MAX_SESSIONS = const(4)  # the oldest is dropped when a fifth logs in
_SAFE = ("GET", "HEAD")


def _token():
    return binascii.hexlify(os.urandom(24)).decode()


class Sessions:
    """In RAM only: a reboot logs everyone out, which is the safe direction."""

    def __init__(self, credentials, clock=time.time, ticks=time.ticks_ms):
        self.credentials = credentials
        self.clock = clock  # wall clock (seconds) for the persisted login throttle
        self.ticks = ticks  # monotonic ms for session expiry
        self._s = {}

    def _expired(self, s):
        return time.ticks_diff(self.ticks(), s["seen"]) > SESSION_S * 1000

    def login(self, password, req=None):
        """Returns (sid, csrf) or raises HTTPError 401/429 with a precise message. `req`
        (the login request) names the client address the throttle counts against."""
        from credentials import CredentialError

        if not isinstance(password, str) or not 0 < len(password) <= 128:
            raise HTTPError(400, "password must be a string of 1 to 128 characters")
        client = req.remote if req else None
        try:
            ok = self.credentials.login(password, self.clock(), client)
        except CredentialError as e:
            if e.code == "THROTTLED":
                raise HTTPError(429, "too many failed logins; try again in %d s" % e.retry_after,
                                (("Retry-After", str(e.retry_after)),))
            raise HTTPError(503, "device is not provisioned (%s)" % e.code)
        if not ok:
            wait = self.credentials.next_attempt_in(self.clock(), client)
            raise HTTPError(401, "wrong password" + (
                "; next attempt allowed in %d s" % wait if wait else ""))
        for sid in [k for k, s in self._s.items() if self._expired(s)]:
            del self._s[sid]
        while len(self._s) >= MAX_SESSIONS:
            oldest = min(self._s, key=lambda k: self._s[k]["created"])
            del self._s[oldest]
        if req:
            req.owner()
        sid, csrf = _token(), _token()
        now = self.ticks()
        self._s[sid] = {"csrf": csrf, "seen": now, "created": now}
        return sid, csrf

    def cookie(self, sid):
        return "%s=%s; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=%d" % (
            COOKIE, sid, SESSION_S)

    def clear_cookie(self):
        return "%s=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0" % COOKIE

    def logout(self, req):
        sid = req.cookie(COOKIE)
        if sid in self._s:
            del self._s[sid]

    def logout_all(self):
        self._s = {}

    def check(self, req, csrf_field=None):
        """The request's session, or HTTPError 401; state-changing methods also need the
        session's CSRF token (header X-CSRF-Token, or the form field `csrf_field`)."""
        sid = req.cookie(COOKIE)
        s = self._s.get(sid) if sid else None
        if s is None or self._expired(s):
            if s is not None:
                del self._s[sid]
            raise HTTPError(401, "log in first")
        if req.method not in _SAFE:
            token = req.header("x-csrf-token") or csrf_field or ""
            if not equal(token, s["csrf"]):
                raise HTTPError(403, "missing or wrong CSRF token")
        s["seen"] = self.ticks()
        req.state["session"] = s
        req.owner()
        return s
