# Owner pages and the privacy API over the local TLS server (4.8, 4.11, 4.12, 4.2): the routes
# and the tasks behind them. The page code (pagekit.py, the framework; ownerpages.py: login,
# status, heating; setuppage.py; infopages.py: updates, privacy, consent, security, the notice
# API; erasepages.py: delete my data, factory reset) is imported for the request that needs
# it, one page module at a time, and dropped after it: an owner opens a page now and then, and
# that code would otherwise take some 40 KB of heap for good, beside an update in flight.
# The stylesheet (static/style.css in the slot) is answered here.
# Without a session only the login page, the stylesheet and security.txt answer; every other
# page redirects to the login page, every API route answers 401 (docs/interfaces.md).
import asyncio
import sys

import factoryreset
import store
from httpd import Response

# (method, path, body limit, module that answers it)
ROUTES = (
    ("GET", "/login", 0, "ownerpages"),
    ("POST", "/login", 512, "ownerpages"),
    ("GET", "/", 0, "ownerpages"),
    ("POST", "/logout", 256, "ownerpages"),
    ("GET", "/setup", 0, "setuppage"),
    ("POST", "/setup", 2048, "setuppage"),
    ("GET", "/status", 0, "ownerpages"),
    ("GET", "/thermostat", 0, "ownerpages"),
    ("POST", "/thermostat", 2048, "ownerpages"),
    ("GET", "/updates", 0, "infopages"),
    ("POST", "/updates", 256, "infopages"),
    ("GET", "/privacy", 0, "infopages"),
    ("GET", "/consent", 0, "infopages"),
    ("POST", "/consent", 512, "infopages"),
    ("GET", "/delete", 0, "erasepages"),
    ("POST", "/delete", 512, "erasepages"),
    ("GET", "/reset", 0, "erasepages"),
    ("POST", "/reset", 512, "erasepages"),
    ("GET", "/security", 0, "infopages"),
    ("GET", "/.well-known/security.txt", 0, "infopages"),
    ("POST", "/security", 1024, "infopages"),
    ("GET", "/api/privacy", 0, "infopages"),
    ("PUT", "/api/consent", 256, "infopages"),
    ("POST", "/api/privacy/delete", 128, "erasepages"),
    ("POST", "/api/reset", 256, "erasepages"),
)
_MODULES = ("ownerpages", "setuppage", "infopages", "erasepages", "pagekit")


def _on_demand(ctx, name):
    async def handler(req):
        handlers = __import__(name).HANDLERS  # the page module, on pagekit's framework
        try:
            return await sys.modules["pagekit"].serve(ctx, req, handlers)
        finally:
            for m in _MODULES:  # a request still running keeps its own reference
                sys.modules.pop(m, None)
    return handler


def slot_path(ctx, name):
    """A file of the running slot (verified at boot with the rest of the app)."""
    return ctx.boot.app_dir + "/" + name


def slot_json(ctx, name):
    """A JSON object from the running slot."""
    d = store.load(slot_path(ctx, name), {})
    return d if isinstance(d, dict) else {}


def load_disclosure(ctx):
    """The maker's disclosure settings (disclosure.json in the running slot)."""
    return slot_json(ctx, "disclosure.json")


def register(srv, ctx):
    """Add the routes to `srv` and start what they need: the long press of the button
    (factory reset) and a deletion that a power cut interrupted."""

    @srv.route("GET", "/static/style.css")
    async def style(req):
        with open(slot_path(ctx, "static/style.css"), "rb") as f:
            return Response(f.read(), 200, "text/css; charset=utf-8")

    srv.table(ROUTES, lambda name: _on_demand(ctx, name))
    asyncio.create_task(factoryreset.watch_button(ctx))
    if ctx.privacy.pending() is not None:
        asyncio.create_task(ctx.privacy.resume())
