# Delete my data (4.11-1) and factory reset, on pagekit.py: the pages and their JSON API.
import factoryreset
import privacy
from httpd import HTTPError, json_response
from pagekit import esc, only, yes


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


# --- JSON API: POST /api/privacy/delete, POST /api/reset ----------------------------------------

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
    ("GET", "/delete"): ("page", _delete),
    ("POST", "/delete"): ("form", _delete, _delete_post),
    ("GET", "/reset"): ("page", _reset),
    ("POST", "/reset"): ("form", _reset, _reset_post),
    ("POST", "/api/privacy/delete"): ("raw", _api_delete),
    ("POST", "/api/reset"): ("raw", _api_reset),
}
