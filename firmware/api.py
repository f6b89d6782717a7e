# The local management API (JSON over TLS): login, status, thermostat settings, updates.
# Unauthenticated responses disclose nothing beyond the model (4.6, 4.12).
import time

import pages
from bundle import MAX_PREFIX
from credentials import CredentialError
from httpd import HTTPError, Server, json_response


def build(ctx):
    """A Server with the API routes over `ctx` (the running device: boot, thermostat,
    sessions, credentials, updater, identity, reset)."""
    srv = Server(ctx.log)
    sessions = ctx.sessions

    def authed(handler):
        async def wrapper(req):
            sessions.check(req)
            return await handler(req)
        return wrapper

    @srv.route("GET", "/api/health")
    async def health(req):
        return json_response({"ok": True, "model": ctx.identity.get("model")})

    @srv.route("POST", "/api/login", max_body=512)
    async def login(req):
        doc = await req.json(512)
        if not isinstance(doc, dict) or list(doc.keys()) != ["password"]:
            raise HTTPError(400, 'send {"password": "..."}')
        sid, csrf = sessions.login(doc["password"], req)
        return json_response({"csrf": csrf, "expires_in": 1800},
                             headers=(("Set-Cookie", sessions.cookie(sid)),))

    @srv.route("POST", "/api/logout")
    @authed
    async def logout(req):
        sessions.logout(req)
        return json_response({"ok": True}, headers=(("Set-Cookie", sessions.clear_cookie()),))

    @srv.route("GET", "/api/status")
    @authed
    async def status(req):
        return json_response(ctx.status())

    @srv.route("GET", "/api/thermostat")
    @authed
    async def thermostat_get(req):
        return json_response(ctx.thermostat.state())

    @srv.route("PUT", "/api/thermostat", max_body=1024)
    @authed
    async def thermostat_put(req):
        patch = await req.json(1024)
        try:
            ctx.thermostat.update(patch)
        except ValueError as e:
            raise HTTPError(422, str(e))
        return json_response(ctx.thermostat.state())

    @srv.route("GET", "/api/update")
    @authed
    async def update_get(req):
        return json_response({"installed": ctx.updater.installed(), "upload": ctx.updater.state,
                              "last": ctx.boot.state()["last"]})

    @srv.route("POST", "/api/update", max_body=ctx.capacity + MAX_PREFIX)
    @authed
    async def update_post(req):
        ctype = (req.header("content-type") or "").split(";")[0].strip()
        if ctype != "application/octet-stream":
            raise HTTPError(415, "send the bundle as application/octet-stream")
        if not req.content_length:
            raise HTTPError(400, "empty upload")
        result = await ctx.updater.receive(req)
        result["restarting_in_ms"] = ctx.restart_later()
        return json_response(result)

    @srv.route("POST", "/api/password", max_body=1024)
    @authed
    async def password(req):
        doc = await req.json(1024)
        if not isinstance(doc, dict) or sorted(doc.keys()) != ["new", "old"] \
                or not isinstance(doc["old"], str) or not isinstance(doc["new"], str):
            raise HTTPError(400, 'send {"old": "...", "new": "..."}')
        try:
            ctx.credentials.change(doc["old"], doc["new"], time.time(), req.remote)
        except CredentialError as e:
            messages = {"TOO_SHORT": "the new password needs at least 8 characters",
                        "TOO_LONG": "the new password is limited to 128 characters",
                        "BLOCKLISTED": "that password is too common; choose another",
                        "WRONG_PASSWORD": "the current password is wrong"}
            if e.code == "THROTTLED":
                raise HTTPError(429, "too many failed attempts; try again in %d s"
                                % e.retry_after, (("Retry-After", str(e.retry_after)),))
            raise HTTPError(403 if e.code == "WRONG_PASSWORD" else 422,
                            messages.get(e.code, e.code))
        sessions.logout_all()
        return json_response({"ok": True, "message": "password changed; log in again"},
                             headers=(("Set-Cookie", sessions.clear_cookie()),))

    pages.register(srv, ctx)
    return srv
