# The first-run set-up page (4.12-1), on pagekit.py: the owner's own password, a name, consent
# per purpose, time zone and schedule, in one form; nothing is stored unless all of it is valid.
import privacy
from httpd import HTTPError
from pagekit import change_password, esc, integer, only, sched_rows, schedule, settings, \
    tz_select, yes


# --- first-run set-up ------------------------------------------------------------------------

async def _setup(ui, req, s, msg=None, ok=False):
    th = ui.ctx.thermostat.settings
    body = ['<p>Four short steps. You can change everything later.</p><form method="post" '
            'action="/setup">', ui.csrf(s),
            '<fieldset><h2>1. Your own password</h2><p class="note">The password on the label '
            'works, but anyone who has seen the label knows it. Choose your own (at least 8 '
            'characters), or leave these empty.</p><label>Password on the label<br><input '
            'type="password" name="old" autocomplete="current-password"></label><label>New '
            'password<br><input type="password" name="new" autocomplete="new-password" '
            'minlength="8" maxlength="128"></label><label>New password again<br><input '
            'type="password" name="new2" autocomplete="new-password"></label></fieldset>'
            '<fieldset><h2>2. Name (optional)</h2><label>Name of this thermostat<br><input '
            'name="name" maxlength="32" placeholder="Living room" value="',
            esc(ui.val("name", ui.priv.profile().get("name", ""))), '"></label></fieldset>'
            '<fieldset><h2>3. Your data</h2><p class="note">The thermostat heats without any '
            'of these. Tick only what you want; nothing is on unless you tick it. You can '
            'withdraw at any time.</p>']
    body += ui.consent_boxes()
    body.append('</fieldset><fieldset><h2>4. Time zone and schedule</h2>')
    body += tz_select(ui, th["utc_offset_min"])
    body += sched_rows(ui, th["schedule"], 4)
    body.append('</fieldset><p><button>Finish set-up</button></p></form>')
    return ui.html("Set up your thermostat", body, s, msg, ok)


async def _setup_post(ui, req, s, f):
    ctx, priv = ui.ctx, ui.priv
    only(f, ("old", "new", "new2", "name", "tz") + privacy.KEYS, 4)
    patch = {"utc_offset_min": integer(f.get("tz", "0"), "time zone"),
             "schedule": schedule(f, 4)}
    settings(ctx, patch)
    choices = {p: yes(f, p) for p in privacy.KEYS}
    try:
        name = priv.check_name(f.get("name", ""))
    except ValueError as e:
        raise HTTPError(422, str(e))
    changed = change_password(ctx, f, False, req.remote)  # the last check, the first change
    ctx.thermostat.update(patch)
    priv.set_consents(choices)
    priv.set_profile(name, setup=True)
    body = ['<div class="card"><p>Your thermostat is ready. It heats on its own; you do not '
            'need to keep this page open.</p>']
    if changed:
        body.append('<p><b>Your new password is active.</b> Log in again with it.</p><p><a '
                    'href="/login">Log in</a></p></div>')
        return ui.html("Set-up complete", body, None, headers=(
            ("Set-Cookie", ui.sessions.clear_cookie()),))
    body.append('<p><a href="/status">See the status</a></p></div>')
    return ui.html("Set-up complete", body, s)


HANDLERS = {
    ("GET", "/setup"): ("page", _setup),
    ("POST", "/setup"): ("form", _setup, _setup_post),
}
