# Owner pages, part 2, on the framework of ownerpages.py: what the owner is told and decides.
# First-run set-up (4.12), updates (4.3), privacy (4.8-1), consent (4.8-2, 4.8-3), delete my
# data (4.11), factory reset, security (4.2-1, 4.3-4), and the JSON API of the privacy
# functions. Imported by pages.py for one request, then dropped.
import factoryreset
import ownerpages
import privacy
from httpd import HTTPError, Response, json_response
from ownerpages import (change_password, esc, integer, only, sched_rows, schedule, settings,
                        tz_select, yes)


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
    changed = change_password(ctx, f)  # the last check and the first change
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


# --- updates ---------------------------------------------------------------------------------

async def _updates(ui, req, s, msg=None, ok=False):
    ctx, disc = ui.ctx, ui.disc
    inst = ctx.updater.installed()
    st = ctx.boot.state()
    up = ctx.updater.state
    body = ['<div class="card"><h2>Installed</h2><p>Version <b>', esc(inst["version"]), '</b>',
            " (on trial: checking itself)" if inst["trial"] else "", '</p><p>What changed: ',
            esc(inst["notes"] or "-"), '</p>',
            '<p><b>This version fixes security problems.</b></p>' if inst["security_fix"] else "",
            '</div><div class="card"><h2>Pending</h2><p>',
            "A new version is installed and starts at the next restart." if st["pending"]
            else "Nothing waiting.", '</p>']
    if up.get("state") not in (None, "idle"):
        body += ['<p>Last upload: ', esc(up.get("state")), " ",
                 esc(up.get("version") or up.get("verdict") or ""), '</p>']
    if st["last"]:
        body += ['<p><small>Last event: ', esc(st["last"]), '</small></p>']
    body += ['</div><div class="card"><h2>Policy</h2><p>', ui.named(disc.get("update_policy",
                                                                            "")),
             '</p><p>Security updates until <b>', esc(disc.get("support_end", "-")),
             '</b>.</p></div>']
    return ui.html("Updates", body, s, msg, ok)


# --- privacy, consent, delete my data, factory reset -----------------------------------------

async def _privacy(ui, req, s, msg=None, ok=False):
    body = ['<p>What this thermostat and its services do with data about you. ',
            ui.named(ui.notice["third_parties"]), '</p>']
    for row in ui.notice["inventory"]:
        body.append('<div class="card"><h2>%s</h2><dl><dt>Where</dt><dd>%s</dd><dt>Used by</dt>'
                    '<dd>%s</dd><dt>Why</dt><dd>%s</dd><dt>Kept</dt><dd>%s</dd><dt>Removed by'
                    '</dt><dd>%s</dd></dl></div>' % tuple(ui.named(v) for v in row))
    body.append('<p><a href="/consent">Your choices (consent)</a> &middot; <a href="/delete">'
                'Delete my data</a> &middot; <a href="/reset">Factory reset</a></p>')
    return ui.html("Your data", body, s, msg, ok)


async def _consent(ui, req, s, msg=None, ok=False):
    body = ['<form method="post" action="/consent" class="card">', ui.csrf(s),
            '<p class="note">Nothing is on unless you tick it. Untick to withdraw: the thermostat '
            'stops at once.</p>']
    body += ui.consent_boxes()
    body.append('<p><button>Save my choices</button></p></form>')
    return ui.html("Your choices", body, s, msg, ok)


async def _consent_post(ui, req, s, f):
    only(f, privacy.KEYS)
    ui.priv.set_consents({p: yes(f, p) for p in privacy.KEYS})
    return await _consent(ui, req, s, "Saved. Your choices apply now.", True)


async def _delete(ui, req, s, msg=None, ok=False):
    return ui.html("Delete my data", [
        '<div class="card"><p>This removes from the thermostat: your heating schedule, the '
        'name, the history of changes and your consent choices, including the leftover copies '
        'in its memory chip. It also asks ', ui.named("{service}"), ' to delete what it holds '
        'about you.</p><p>The thermostat keeps heating, with its temperature, time zone and '
        'password unchanged, ready for the next person. To also forget those, use a <a href="'
        '/reset">factory reset</a>.</p></div><form method="post" action="/delete" class="card">',
        ui.csrf(s), '<label><input type="checkbox" name="confirm" value="yes" required>Yes, '
        'delete my personal data</label><p><button class="danger">Delete my data</button></p>'
        '</form>'], s, msg, ok)


async def _delete_post(ui, req, s, f):
    only(f, ("confirm",))
    if not yes(f, "confirm"):
        raise HTTPError(422, "tick the box to confirm")
    try:
        r = await ui.priv.delete()
    except privacy.Busy:
        raise HTTPError(409, "a deletion is already running; try again in a minute")
    return ui.html("Your data is deleted", [
        '<div class="card"><p><b>Deleted from this thermostat:</b> your schedule, name, history '
        'of changes and consent choices, and their leftover copies in its memory chip.</p><p><b>'
        'At %s:</b> deletion requested (request %s); the thermostat sends the request when it '
        'is online.</p><p><b>Kept:</b> the temperature setting, time zone, password and '
        'software.</p></div><p><a href="/status">Back to the status</a></p>'
        % (ui.named("{service}"), esc(r["request"]))], s)


async def _reset(ui, req, s, msg=None, ok=False):
    return ui.html("Factory reset", [
        '<div class="card"><p>A factory reset returns the thermostat to how it left the '
        'factory: it deletes your data (as <a href="/delete">Delete my data</a> does), all '
        'settings and your password. Afterwards, log in with the password on the label. The '
        'software stays up to date.</p><p class="note">Without this page: hold the button for '
        '10 seconds until the light blinks fast.</p></div><form method="post" action="/reset" '
        'class="card">', ui.csrf(s), '<label>Type <b>%s</b> to confirm<br><input name="confirm" '
        'autocomplete="off" required></label><p><button class="danger">Reset to factory '
        'settings</button></p></form>' % factoryreset.CONFIRM], s, msg, ok)


async def _reset_post(ui, req, s, f):
    only(f, ("confirm",))
    factoryreset.check_confirm(f.get("confirm"))
    await _run_reset(ui, "requested on the reset page")
    return ui.html("Factory reset done", [
        '<div class="card"><p>All settings and personal data are deleted. The thermostat '
        'restarts now.</p><p>Log in with the <b>password printed on its label</b>.</p><p><a '
        'href="/login">Log in</a></p></div>'], None,
        headers=(("Set-Cookie", ui.sessions.clear_cookie()),))


async def _run_reset(ui, why):
    try:
        return await factoryreset.factory_reset(ui.ctx, why)
    except privacy.Busy:
        raise HTTPError(409, "a deletion is running; try again in a minute")


# --- security --------------------------------------------------------------------------------

async def _security(ui, req, s, msg=None, ok=False):
    disc = ui.disc
    links = ['<a href="%s">%s</a><br>' % (esc(c), esc(c.replace("mailto:", "")))
             for c in disc.get("contact", ())]
    return ui.html("Security", [
        '<div class="card"><h2>Report a security problem</h2><p>'] + links + [
        '</p><p>How we handle reports: <a href="', esc(disc.get("policy", "")), '" rel='
        '"noreferrer">disclosure policy</a>. We fix confirmed problems within ',
        esc(disc.get("fix_days", 90)), ' days. Machine-readable: <a href="/.well-known/'
        'security.txt">security.txt</a>.</p></div><div class="card"><h2>Support period</h2>'
        '<p>Security updates until <b>', esc(disc.get("support_end", "-")), '</b> (end of '
        'life).</p><p class="note">', ui.named(disc.get("support_reason", "")), ' ',
        ui.named(disc.get("after_end", "")), '</p></div><form method="post" action="/security" '
        'class="card">', ui.csrf(s), '<h2>Change password</h2><label>Current password<br><input '
        'type="password" name="old" autocomplete="current-password" required></label><label>'
        'New password<br><input type="password" name="new" autocomplete="new-password" '
        'minlength="8" maxlength="128" required></label><label>New password again<br><input '
        'type="password" name="new2" autocomplete="new-password" required></label><p><button>'
        'Change password</button></p></form>'], s, msg, ok)


async def _security_post(ui, req, s, f):
    only(f, ("old", "new", "new2"))
    change_password(ui.ctx, f, True)
    return ui.html("Password changed", [
        '<div class="card"><p>Your new password is active. Log in again with it.</p><p><a '
        'href="/login">Log in</a></p></div>'], None,
        headers=(("Set-Cookie", ui.sessions.clear_cookie()),))


def security_txt(d):
    """RFC 9116 security.txt from the disclosure settings."""
    lines = ["# Security contact of the %s thermostat. Please report vulnerabilities here."
             % d.get("maker", "")]
    for c in d.get("contact", ()):
        lines.append("Contact: " + c)
    for k, name in (("expires", "Expires"), ("policy", "Policy"),
                    ("languages", "Preferred-Languages"), ("canonical", "Canonical")):
        if d.get(k):
            lines.append("%s: %s" % (name, d[k]))
    return "\n".join(lines) + "\n"


async def _security_txt(ui, req):
    return Response(security_txt(ui.disc), 200, "text/plain; charset=utf-8")


# --- JSON API: GET /api/privacy, PUT /api/consent, POST /api/privacy/delete, POST /api/reset --

async def _api_privacy(ui, req):
    ui.sessions.check(req)
    priv, keys = ui.priv, ("what", "where", "who", "why", "kept", "removed_by")
    return json_response({
        "inventory": [{k: ui.fill(v) for k, v in zip(keys, row)} for row in ui.notice["inventory"]],
        "third_parties": ui.fill(ui.notice["third_parties"]), "consents": priv.consents(),
        "profile": priv.profile(), "history": priv.history(),
        "service_request": priv.service_request()})


async def _api_consent(ui, req):
    ui.sessions.check(req)
    doc = await req.json(req.content_length)
    try:
        return json_response(ui.priv.set_consents(doc))
    except ValueError as e:
        raise HTTPError(422, str(e))


async def _api_delete(ui, req):
    ui.sessions.check(req)
    if await req.json(req.content_length) != {"confirm": "DELETE"}:
        raise HTTPError(422, 'send {"confirm": "DELETE"}')
    try:
        return json_response(await ui.priv.delete())
    except privacy.Busy:
        raise HTTPError(409, "a deletion is already running")


async def _api_reset(ui, req):
    ui.sessions.check(req)
    doc = await req.json(req.content_length)
    if not isinstance(doc, dict) or list(doc.keys()) != ["confirm"]:
        raise HTTPError(400, 'send {"confirm": "%s"}' % factoryreset.CONFIRM)
    factoryreset.check_confirm(doc["confirm"])
    return json_response(await _run_reset(ui, "requested through the API"),
                         headers=(("Set-Cookie", ui.sessions.clear_cookie()),))


HANDLERS = {
    ("GET", "/setup"): ("page", _setup),
    ("POST", "/setup"): ("form", _setup, _setup_post),
    ("GET", "/updates"): ("page", _updates),
    ("GET", "/privacy"): ("page", _privacy),
    ("GET", "/consent"): ("page", _consent),
    ("POST", "/consent"): ("form", _consent, _consent_post),
    ("GET", "/delete"): ("page", _delete),
    ("POST", "/delete"): ("form", _delete, _delete_post),
    ("GET", "/reset"): ("page", _reset),
    ("POST", "/reset"): ("form", _reset, _reset_post),
    ("GET", "/security"): ("page", _security),
    ("POST", "/security"): ("form", _security, _security_post),
    ("GET", "/.well-known/security.txt"): ("raw", _security_txt),
    ("GET", "/api/privacy"): ("raw", _api_privacy),
    ("PUT", "/api/consent"): ("raw", _api_consent),
    ("POST", "/api/privacy/delete"): ("raw", _api_delete),
    ("POST", "/api/reset"): ("raw", _api_reset),
}


async def serve(ctx, req):
    return await ownerpages.serve(ctx, req, HANDLERS)
