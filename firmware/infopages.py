# What the owner is told, on pagekit.py: updates (4.3-2, 4.3-5), privacy (4.8-1), consent
# (4.8-2, 4.8-3), security and the support period (4.2-1, 4.3-4), security.txt (RFC 9116), and
# the JSON API of the notice and the consents.
import pagekit
import privacy
from httpd import HTTPError, Response, json_response
from pagekit import change_password, esc, only, yes


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
    body.append('</div>')
    cloud = ctx.cloud
    if cloud is not None:  # updates offered by the service, and the owner's say over them
        body += _offered(ui, s, cloud)
    body += ['<div class="card"><h2>Support</h2><p>', ui.named(disc.get("update_policy", "")),
             '</p><p>Security updates until <b>', esc(disc.get("support_end", "-")),
             '</b>.</p></div>']
    return ui.html("Updates", body, s, msg, ok)


_POLICY = (("auto", "Install updates automatically (recommended)"),
           ("disabled", "Ask me first: do not install until I allow it here"),
           ("postpone", "Postpone for 24 hours"))


def _offered(ui, s, cloud):
    from puller import load_policy

    pull, pol = cloud.puller.state, load_policy(ui.ctx.data, ui.ctx.clock())
    offer = cloud.puller.offer
    out = ['<div class="card"><h2>Available</h2><p>']
    said = {"available": "It waits for you: allow it below.",
            "postponed": "Postponed until %s." % ui.when(pull.get("until")),
            "scheduled": "It will be downloaded shortly.", "waiting": "It will be downloaded "
            "shortly.", "downloading": "It is being downloaded."}.get(pull.get("state"))
    if offer is not None and said:
        out += ['Version <b>', esc(offer["version"]), '</b> is available',
                ' and <b>fixes security problems</b>' if offer.get("security_fix") else '',
                '. ', said]
    else:
        out.append('No update waiting.')
    out += ['</p><form method="post" action="/updates">', ui.csrf(s)]
    cur = ui.val("policy", pol["policy"])
    for key, text in _POLICY:
        out += ['<label><input type="radio" name="policy" value="', key, '"',
                pagekit.CHECK if cur == key else '', '>', text, '</label>']
    if pol["policy"] == "postpone":
        out += ['<p><small>Postponed until ', ui.when(pol.get("until")), '.</small></p>']
    out.append('<p><button>Save</button></p></form></div>')
    return out


async def _updates_post(ui, req, s, f):
    from puller import set_policy

    only(f, ("policy",))
    cloud = ui.ctx.cloud
    if cloud is None:
        raise HTTPError(409, "this thermostat gets updates only from its owner")
    p = f.get("policy")
    try:
        set_policy(ui.ctx.data, {"policy": p, "hours": 24} if p == "postpone" else {"policy": p},
                   ui.ctx.clock())
    except ValueError as e:
        raise HTTPError(422, str(e))
    cloud.event({"type": "update_policy", "policy": p})
    cloud.puller.kick()
    return await _updates(ui, req, s, "Saved.", True)


# --- privacy and consent (delete my data and factory reset: erasepages.py) -------------------

async def _privacy(ui, req, s, msg=None, ok=False):
    body = ['<p>What this thermostat and its services do with data about you. ',
            ui.named(ui.notice["third_parties"]), '</p>']
    for row in ui.notice["inventory"]:
        body.append('<div class="card"><h2>%s</h2><dl><dt>Where</dt><dd>%s</dd><dt>Used by</dt>'
                    '<dd>%s</dd><dt>Why</dt><dd>%s</dd><dt>Kept</dt><dd>%s</dd><dt>Removed by'
                    '</dt><dd>%s</dd></dl></div>' % tuple(ui.named(v) for v in row))
    pending, done = ui.priv.service_request(), ui.priv.service_receipt()
    if pending or done:
        body += ['<div class="card"><h2>Your deletion request at ', ui.named("{service}"),
                 '</h2><p>']
        if pending:
            body += ['Requested on ', ui.when(pending.get("requested")), ' (request ',
                     esc(pending.get("id")), '): waiting for ', ui.named("{service}"),
                     ' to confirm. The thermostat sends it whenever it is online.']
        else:
            body += ['<b>Deleted:</b> ', ui.named("{service}"), ' confirmed on ',
                     ui.when(done.get("confirmed")), ' (request ', esc(done.get("id")), ').']
        body.append('</p></div>')
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
    change_password(ui.ctx, f, True, req.remote)
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


# --- JSON API: GET /api/privacy, PUT /api/consent ----------------------------------------------

async def _api_privacy(ui, req):
    ui.sessions.check(req)
    priv, keys = ui.priv, ("what", "where", "who", "why", "kept", "removed_by")
    return json_response({
        "inventory": [{k: ui.fill(v) for k, v in zip(keys, row)} for row in ui.notice["inventory"]],
        "third_parties": ui.fill(ui.notice["third_parties"]), "consents": priv.consents(),
        "profile": priv.profile(), "history": priv.history(),
        "service_request": priv.service_request(), "service_receipt": priv.service_receipt()})


async def _api_consent(ui, req):
    ui.sessions.check(req)
    doc = await req.json(req.content_length)
    try:
        return json_response(ui.priv.set_consents(doc))
    except ValueError as e:
        raise HTTPError(422, str(e))


HANDLERS = {
    ("GET", "/updates"): ("page", _updates),
    ("POST", "/updates"): ("form", _updates, _updates_post),
    ("GET", "/privacy"): ("page", _privacy),
    ("GET", "/consent"): ("page", _consent),
    ("POST", "/consent"): ("form", _consent, _consent_post),
    ("GET", "/security"): ("page", _security),
    ("POST", "/security"): ("form", _security, _security_post),
    ("GET", "/.well-known/security.txt"): ("raw", _security_txt),
    ("GET", "/api/privacy"): ("raw", _api_privacy),
    ("PUT", "/api/consent"): ("raw", _api_consent),
}
