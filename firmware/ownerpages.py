# Owner pages, on pagekit.py: login, start page, log out, status and heating (4.12, 4.13).
from httpd import HTTPError
from pagekit import CHECK, esc, integer, number, only, redirect, sched_rows, schedule, \
    settings, tz_select
from thermostat import MAX_SCHEDULE, SETPOINT_MAX, SETPOINT_MIN


# --- without a session: login, start page ----------------------------------------------------

def _login_page(ui, msg=None, status=200, headers=()):
    return ui.html("Log in", [
        '<form method="post" action="/login" class="card"><label>Password<br><input '
        'type="password" name="password" autocomplete="current-password" required '
        'maxlength="128"></label><small>First time? Use the password printed on the label on '
        'the back of the thermostat.</small><p><button>Log in</button></p></form>'],
        None, msg, False, status, headers)


async def _login_get(ui, req):
    return _login_page(ui)


async def _login_post(ui, req):
    try:
        f = await req.form(req.content_length, 4)
        only(f, ("password",))
        sid, _ = ui.sessions.login(f.get("password", ""), req)
    except HTTPError as e:
        return _login_page(ui, e.message, e.status, e.headers)
    return redirect("/", (("Set-Cookie", ui.sessions.cookie(sid)),))


async def _home(ui, req):
    try:
        ui.sessions.check(req)
    except HTTPError:
        return redirect("/login")
    return redirect("/status" if ui.priv.setup_done() else "/setup")


async def _logout(ui, req, s, f):
    ui.sessions.logout(req)
    return redirect("/login", (("Set-Cookie", ui.sessions.clear_cookie()),))


# --- status and heating ----------------------------------------------------------------------

async def _status(ui, req, s, msg=None, ok=False):
    priv = ui.priv
    st = ui.ctx.status()
    t = st["thermostat"]
    temp = t["temperature"]
    body = ['<div class="card"><p class="big">', "-" if temp is None else "%.1f &deg;C" % temp,
            '</p><p>Heating <b>', "on" if t["heating"] else "off", '</b>, target <b>',
            "off" if t["target"] is None else "%g &deg;C" % t["target"], '</b></p><p><small>',
            esc(priv.profile().get("name") or "Thermostat"), ' &middot; ', ui.model,
            ', software ', esc(st["version"]), '</small></p></div><div class="card"><h2>Your '
            'choices</h2>']
    cur = priv.consents()
    for key, title, _ in ui.purposes():
        body += [esc(title), ': <b>', "allowed" if cur[key]["granted"] else "off", '</b><br>']
    body.append('<a href="/consent">Change</a></div><div class="card"><h2>History of changes'
                '</h2>')
    if not priv.allowed("history"):
        body.append('<p class="note">Not kept: you have not allowed it.</p>')
    for e in reversed(priv.history()):
        body += [ui.when(e[0]), ': ', esc(e[1]), '<br>']
    body.append('</div>')
    return ui.html("Status", body, s, msg, ok)


async def _heating(ui, req, s, msg=None, ok=False):
    th = ui.ctx.thermostat.settings
    mode = ui.val("mode", th["mode"])
    body = ['<form method="post" action="/thermostat" class="card">', ui.csrf(s),
            '<label><input type="radio" name="mode" value="heat"',
            CHECK if mode == "heat" else "", '>Heating on</label><label><input type="radio" '
            'name="mode" value="off"', CHECK if mode == "off" else "", '>Heating off</label>'
            '<label>Temperature while the schedule is empty (&deg;C)<br><input type="number" '
            'name="setpoint" min="%g" max="%g" step="0.5" value="%s" inputmode="decimal">'
            '</label>' % (SETPOINT_MIN, SETPOINT_MAX, esc(ui.val("setpoint",
                                                                  "%g" % th["setpoint"])))]
    body += tz_select(ui, th["utc_offset_min"])
    body.append('<h2>Schedule</h2>')
    rows = MAX_SCHEDULE if ui.sent is not None else min(MAX_SCHEDULE, len(th["schedule"]) + 2)
    body += sched_rows(ui, th["schedule"], max(3, rows))
    body.append('<p><button>Save</button></p></form>')
    return ui.html("Heating", body, s, msg, ok)


async def _heating_post(ui, req, s, f):
    only(f, ("mode", "setpoint", "tz"), MAX_SCHEDULE)
    patch = {"schedule": schedule(f, MAX_SCHEDULE)}
    if "mode" in f:
        patch["mode"] = f["mode"]
    if "setpoint" in f:
        patch["setpoint"] = number(f["setpoint"], "temperature")
    if "tz" in f:
        patch["utc_offset_min"] = integer(f["tz"], "time zone")
    settings(ui.ctx, patch)
    ui.ctx.thermostat.update(patch)
    return await _heating(ui, req, s, "Saved.", True)


HANDLERS = {
    ("GET", "/login"): ("raw", _login_get),
    ("POST", "/login"): ("raw", _login_post),
    ("GET", "/"): ("raw", _home),
    ("POST", "/logout"): ("form", None, _logout),
    ("GET", "/status"): ("page", _status),
    ("GET", "/thermostat"): ("page", _heating),
    ("POST", "/thermostat"): ("form", _heating, _heating_post),
}
