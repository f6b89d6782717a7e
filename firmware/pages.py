# Owner pages and the privacy API over the local TLS server (4.8, 4.11, 4.12, 4.2): the routes
# and the tasks behind them. The page code (ownerpages.py: framework, login, status, heating;
# infopages.py: set-up, updates, privacy, consent, delete my data, factory reset, security,
# privacy API) is imported for the request that needs it and dropped after it: an owner opens
# a page now and then, and that code would otherwise take some 30 KB of heap for good, beside
# an update in flight. The stylesheet and security.txt, fetched often, are answered here.
# Without a session only the login page, the stylesheet and security.txt answer; every other
# page redirects to the login page, every API route answers 401 (docs/interfaces.md).
import asyncio
import sys

import factoryreset
import privacy
import store
from httpd import Response

CSS = b"""body{font:17px/1.5 system-ui,sans-serif;margin:0;color:#222;background:#f4f4f1}
nav{display:flex;flex-wrap:wrap;gap:.3em 1.1em;padding:.7em 1em;background:#234}
nav a,nav b{color:#fff}main,footer{max-width:36em;margin:0 auto;padding:.5em 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin:0 0 .3em}
.card,fieldset{background:#fff;border:1px solid #ccc;border-radius:8px;padding:.8em 1em;
margin:0 0 1em}label{display:block;margin:.5em 0}small,.note{color:#555}
input,select,button{font:inherit;padding:.45em;max-width:100%;box-sizing:border-box}
input:not([type=checkbox]):not([type=radio]),select{width:100%}
input[type=checkbox],input[type=radio]{width:1.3em;height:1.3em;margin-right:.5em}
button{background:#246;color:#fff;border:0;border-radius:6px;padding:.6em 1.3em}
button.danger{background:#a22}button.link{background:none;color:#246;padding:0}
.err,.ok{padding:.6em .8em;margin:0 0 1em;border-left:5px solid}
.err{background:#fde8e8;border-color:#a22}.ok{background:#e3f5e3;border-color:#282}
.big{font-size:2.2em;margin:0}dt{font-weight:bold}dd{margin:0 0 .5em}
.row{display:flex;gap:.5em}.row input{flex:1}"""

# (method, path, body limit, module that answers it)
ROUTES = (
    ("GET", "/login", 0, "ownerpages"),
    ("POST", "/login", 512, "ownerpages"),
    ("GET", "/", 0, "ownerpages"),
    ("POST", "/logout", 256, "ownerpages"),
    ("GET", "/setup", 0, "infopages"),
    ("POST", "/setup", 2048, "infopages"),
    ("GET", "/status", 0, "ownerpages"),
    ("GET", "/thermostat", 0, "ownerpages"),
    ("POST", "/thermostat", 2048, "ownerpages"),
    ("GET", "/updates", 0, "infopages"),
    ("GET", "/privacy", 0, "infopages"),
    ("GET", "/consent", 0, "infopages"),
    ("POST", "/consent", 512, "infopages"),
    ("GET", "/delete", 0, "infopages"),
    ("POST", "/delete", 512, "infopages"),
    ("GET", "/reset", 0, "infopages"),
    ("POST", "/reset", 512, "infopages"),
    ("GET", "/security", 0, "infopages"),
    ("POST", "/security", 1024, "infopages"),
    ("GET", "/api/privacy", 0, "infopages"),
    ("PUT", "/api/consent", 256, "infopages"),
    ("POST", "/api/privacy/delete", 128, "infopages"),
    ("POST", "/api/reset", 256, "infopages"),
)
_MODULES = ("infopages", "ownerpages")


def _on_demand(ctx, name):
    async def handler(req):
        mod = __import__(name)
        try:
            return await mod.serve(ctx, req)
        finally:
            for m in _MODULES:  # a request still running keeps its own reference
                sys.modules.pop(m, None)
    return handler


def load_disclosure(ctx):
    """The maker's disclosure settings (disclosure.json in the running slot)."""
    d = store.load(ctx.boot.root + "/slots/" + str(ctx.boot.slot) + "/disclosure.json", {})
    return d if isinstance(d, dict) else {}


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


def register(srv, ctx):
    """Add the routes to `srv` and start what they need: the long press of the button
    (factory reset) and a deletion that a power cut interrupted."""
    if getattr(ctx, "privacy", None) is None:
        ctx.privacy = privacy.Privacy(ctx.data, ctx.thermostat, keep_dirs=(
            ctx.credentials.owner_path.rsplit("/", 1)[0],))
    ctx.privacy.watch(ctx.thermostat)

    @srv.route("GET", "/static/style.css")
    async def style(req):
        return Response(CSS, 200, "text/css; charset=utf-8")

    @srv.route("GET", "/.well-known/security.txt")
    async def sectxt(req):
        return Response(security_txt(load_disclosure(ctx)), 200, "text/plain; charset=utf-8")

    for method, path, limit, name in ROUTES:
        srv.route(method, path, max_body=limit)(_on_demand(ctx, name))
    asyncio.create_task(factoryreset.watch_button(ctx))
    if ctx.privacy.pending() is not None:
        asyncio.create_task(ctx.privacy.resume())
