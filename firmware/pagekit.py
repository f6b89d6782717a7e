# The framework of the owner pages (4.12, 4.13): layout, login check, forms with CSRF tokens,
# strict form parsing, shared form parts. Each page module (ownerpages, setuppage, infopages,
# erasepages) builds on it. Plain HTML forms that work without JavaScript, one shared
# stylesheet (the CSP allows no inline style or script), pages sent as a list of short pieces.
# pages.py imports a page module for one request and drops it and this module afterwards: an
# owner opens a page now and then, and a small heap keeps only the page being served.
import time

from credentials import CredentialError
from httpd import HTTPError, Response
from pages import load_disclosure, slot_json
from privacy import KEYS
from thermostat import SETPOINT_MAX, SETPOINT_MIN, validate

HTML = "text/html; charset=utf-8"
_TZ = tuple(range(-720, 841, 30)) + (345, 525, 765, 825)
CHECK = ' checked'


def esc(v):
    """Text for HTML content and attribute values."""
    return str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        .replace('"', "&quot;").replace("'", "&#39;")


def _tz(m):
    return "UTC%s%02d:%02d" % ("-" if m < 0 else "+", abs(m) // 60, abs(m) % 60)


def redirect(to, headers=()):
    return Response(b"", 303, "text/plain", (("Location", to),) + tuple(headers))


def only(f, allowed, rows=0):
    """Refuse fields the form does not have (`rows` schedule rows: at0, sp0, ...)."""
    for k in f:
        if k not in allowed and not (k[:2] in ("at", "sp") and k[2:].isdigit()
                                     and len(k) < 5 and int(k[2:]) < rows):
            raise HTTPError(400, "unexpected form field %r" % k[:32])


def integer(text, what):
    t = text.strip()
    d = t[1:] if t[:1] == "-" else t
    if not (0 < len(d) <= 4 and d.isdigit()):
        raise HTTPError(422, "%s must be a whole number" % what)
    return int(t)


def number(text, what):
    t = text.strip().replace(",", ".")
    a, dot, b = (t[1:] if t[:1] == "-" else t).partition(".")
    if not (0 < len(a) <= 3 and a.isdigit() and (not dot or 0 < len(b) <= 2 and b.isdigit())):
        raise HTTPError(422, "%s must be a number like 20.5" % what)
    return float(t)


def yes(f, name):
    v = f.get(name)
    if v is not None and v != "yes":
        raise HTTPError(400, "%s must be 'yes' or left out" % name)
    return v == "yes"


def schedule(f, rows):
    out = []
    for i in range(rows):
        at, sp = f.get("at%d" % i, "").strip(), f.get("sp%d" % i, "").strip()
        if at or sp:
            if not (at and sp):
                raise HTTPError(422, "schedule row %d needs both a time and a temperature"
                                % (i + 1))
            out.append({"at": at, "setpoint": number(sp, "schedule temperature")})
    return out


def settings(ctx, patch):
    try:
        return validate(patch, ctx.thermostat.settings)
    except ValueError as e:
        raise HTTPError(422, str(e))


def change_password(ctx, f, required=False, client=None):
    """Change the password when the form asks for it; True if changed. Checks all first.
    `client`: the address the throttle counts a wrong old password against."""
    old, new, new2 = f.get("old", ""), f.get("new", ""), f.get("new2", "")
    if not (old or new or new2 or required):
        return False
    if new != new2:
        raise HTTPError(422, "the two new passwords are not the same")
    try:
        ctx.credentials.check_new(new)
        ctx.credentials.change(old, new, time.time(), client)
    except CredentialError as e:
        if e.code == "THROTTLED":
            raise HTTPError(429, "too many wrong passwords; try again in %d s" % e.retry_after,
                            (("Retry-After", str(e.retry_after)),))
        raise HTTPError(403 if e.code == "WRONG_PASSWORD" else 422, {
            "TOO_SHORT": "the new password needs at least 8 characters",
            "TOO_LONG": "the new password is limited to 128 characters",
            "BLOCKLISTED": "that password is too common; choose another one",
            "WRONG_PASSWORD": "the current password is wrong"}.get(e.code, e.code))
    ctx.sessions.logout_all()
    return True


class Pages:
    """The page framework for one request on the running Device `ctx`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.sessions = ctx.sessions
        self.priv = ctx.privacy
        self.disc = load_disclosure(ctx)
        self.names = (("{maker}", self.disc.get("maker", "the maker")),
                      ("{service}", self.disc.get("service", "the service")))
        self.model = esc(ctx.identity.get("model") or "")
        self.sent = None  # a refused form: shown again as the owner filled it in
        self._notice = None

    @property
    def notice(self):
        """What the owner is told about their data (notice.json in the running slot)."""
        if self._notice is None:
            n = slot_json(self.ctx, "notice.json")
            self._notice = n if isinstance(n.get("purposes"), list) else {
                "purposes": [], "inventory": [], "third_parties": ""}
        return self._notice

    def purposes(self):
        """(key, title, text) of every purpose the device asks consent for."""
        return [p for p in self.notice["purposes"] if p[0] in KEYS]

    def val(self, name, stored):
        """What a form field shows: what the owner sent in a refused form, else `stored`."""
        return stored if self.sent is None else self.sent.get(name, "")

    def fill(self, text):
        """`text` with the maker's and the service's names filled in."""
        for k, v in self.names:
            text = text.replace(k, v)
        return text

    def named(self, text):
        return esc(self.fill(text))

    def when(self, t):
        """A stored time (UTC seconds) in the owner's time zone."""
        if not t:
            return "-"
        off = self.ctx.thermostat.settings["utc_offset_min"]
        tm = time.gmtime(int(t) + off * 60)
        return "%04d-%02d-%02d %02d:%02d (%s)" % (tm[0], tm[1], tm[2], tm[3], tm[4], _tz(off))

    def csrf(self, s):
        return '<input type="hidden" name="csrf" value="%s">' % s["csrf"]

    def html(self, title, body, s=None, msg=None, ok=False, status=200, headers=()):
        """A page: `body` is a list of HTML pieces; `s` the session (navigation, log out);
        `msg` a confirmation (`ok`) or the precise reason a form was refused."""
        out = ['<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" '
               'content="width=device-width,initial-scale=1"><link rel="stylesheet" '
               'href="/static/style.css"><title>', esc(title), ' - Thermostat ', self.model,
               '</title><nav><b>Thermostat ', self.model, '</b>']
        if s:
            out.append('<a href="/status">Status</a><a href="/thermostat">Heating</a>'
                       '<a href="/updates">Updates</a><a href="/privacy">Privacy</a>'
                       '<a href="/security">Security</a>')
        out += ['</nav><main><h1>', esc(title), '</h1>']
        if msg:
            out += ['<p class="', "ok" if ok else "err", '" role="status">', esc(msg), '</p>']
        out += body
        out.append('</main>')
        if s:
            out += ['<footer><form method="post" action="/logout">', self.csrf(s),
                    '<button class="link">Log out</button></form></footer>']
        return Response(out, status, HTML, headers)  # sent piece by piece

    def consent_boxes(self):
        """One opt-in checkbox per purpose, with the time it was given or withdrawn."""
        out = []
        cur = self.priv.consents()
        for key, title, text in self.purposes():
            c = cur[key]
            on = c["granted"] if self.sent is None else self.sent.get(key) == "yes"
            out += ['<label><input type="checkbox" name="', key, '" value="yes"',
                    CHECK if on else "", '><b>', esc(title), '</b><br><small>',
                    self.named(text), '</small>']
            if c["time"]:
                out += ['<br><small>', "Given" if c["granted"] else "Withdrawn", ' on ',
                        self.when(c["time"]), '</small>']
            out.append('</label>')
        return out

    async def page(self, req, render):
        """GET behind the login: render(ui, req, session, msg=None, ok=False)."""
        try:
            s = self.sessions.check(req)
        except HTTPError:
            return redirect("/login")
        return await render(self, req, s)

    async def form(self, req, render, submit):
        """POST behind the login and the CSRF check: submit(ui, req, session, form). A refused
        form is shown again with the precise reason and its 4xx status; nothing is stored."""
        s = None
        method, req.method = req.method, "GET"  # first only: is there a session at all?
        try:
            self.sessions.check(req)
        except HTTPError:
            return redirect("/login")
        finally:
            req.method = method
        f = None
        try:
            f = await req.form(req.content_length, 32)  # room for the schedule's fields
            s = self.sessions.check(req, f.pop("csrf", None))
            return await submit(self, req, s, f)
        except HTTPError as e:
            self.sent = f
            resp = await render(self, req, s, e.message) if s and render else self.html(
                "Not done", ['<p><a href="/">Back</a></p>'], None, e.message)
            resp.status = e.status
            resp.headers += list(e.headers)
            return resp


async def serve(ctx, req, handlers):
    """Answer `req` with the page module's handler for its method and path: ("raw",
    fn(ui, req)), ("page", render) or ("form", render, submit)."""
    h = handlers[(req.method, req.path)]
    ui = Pages(ctx)
    if h[0] == "raw":
        return await h[1](ui, req)
    if h[0] == "page":
        return await ui.page(req, h[1])
    return await ui.form(req, h[1], h[2])


def tz_select(ui, stored):
    cur = str(ui.val("tz", stored))
    out = ['<label>Time zone <select name="tz">']
    for m in sorted(_TZ):
        out += ['<option value="%d"' % m, ' selected' if str(m) == cur else '', '>', _tz(m),
                '</option>']
    out.append('</select></label><small>Clocks that change in summer: choose the offset in '
               'force now.</small>')
    return out


def sched_rows(ui, sched, rows):
    out = ['<p class="note">Each row: from this time on, heat to this temperature (%g to %g '
           '&deg;C). Leave rows empty to skip them.</p>' % (SETPOINT_MIN, SETPOINT_MAX)]
    for i in range(rows):
        e = sched[i] if i < len(sched) else {"at": "", "setpoint": ""}
        if ui.sent is not None:
            e = {"at": ui.sent.get("at%d" % i, ""), "setpoint": ui.sent.get("sp%d" % i, "")}
        out.append('<div class="row"><input type="time" name="at%d" value="%s" aria-label='
                   '"Time %d"><input type="number" name="sp%d" value="%s" min="%g" max="%g" '
                   'step="0.5" inputmode="decimal" aria-label="Temperature %d"></div>'
                   % (i, esc(e["at"]), i + 1, i, esc(e["setpoint"]), SETPOINT_MIN, SETPOINT_MAX,
                      i + 1))
    return out
