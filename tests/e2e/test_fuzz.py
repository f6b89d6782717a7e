"""Property-based fuzzing of every endpoint of the local API and pages (ETSI TS 103 645 4.13):
at least 10,000 generated requests per run through the device's own server, API and pages
(tests/device/http_fuzz.py: the verified slot of a provisioned device, in-memory streams
instead of TLS), and a smaller set over real TLS against a running simulated device.
Properties: no crash, no 5xx, an answer to every complete request, and a refused request
(4xx) changes nothing stored."""

import json
import os
import re
import socket
import ssl
import subprocess
import time
from collections import Counter
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from host_tools import mpy, push, sim

from .test_push import _read_all

DEVICE = mpy.REPO / "tests" / "device"
SID = "{SID" + "_" * 43 + "}"  # replaced by the harness with a live session's tokens
CSRF = "{CSRF" + "_" * 42 + "}"
# `make fuzz` runs the long version: FUZZ_SCALE multiplies every fuzzer's count, and each
# adds what it ran to $FUZZ_REPORT (bench: fuzz_inputs_per_run).
SCALE = max(1, int(os.environ.get("FUZZ_SCALE", "1")))
DRAWN = 17  # requests hypothesis draws per example; each also goes out in 2 mutated variants
EXAMPLES = 200 * SCALE  # x 3 x DRAWN = 10,200 requests (x FUZZ_SCALE)
PURPOSES = ("history", "telemetry", "diagnostics")



def record_inputs(name, n):
    """Append `n` inputs run by fuzzer `name` to $FUZZ_REPORT (JSON lines), if set. One
    short O_APPEND write per test: the xdist workers of a run do not overwrite each other."""
    path = os.environ.get("FUZZ_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"fuzzer": name, "inputs": n}) + "\n")


# --- what the endpoints take -----------------------------------------------------------------

numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, width=64),
                    st.floats(4.0, 31.0), st.sampled_from([5, 30, 5.0, 30.0, 4.99, 30.01, 0,
                                                          -40, 85, 1e308, -0.0]))
hhmm = st.one_of(st.from_regex(r"\A[0-9]{2}:[0-9]{2}\Z"), st.text(max_size=8),
                 st.sampled_from(["07:30", "24:00", "23:59", "7:30", "00:00", "12:60"]))
json_scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30))
any_json = st.recursive(json_scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=12), c, max_size=4)), max_leaves=12)
schedule = st.one_of(any_json, st.lists(st.one_of(
    st.fixed_dictionaries({"at": hhmm, "setpoint": numbers}), any_json), max_size=10))
confirm = st.one_of(st.sampled_from(["DELETE", "RESET", "reset", " RESET ", "yes", ""]), any_json)

JSON_FIELDS = {
    "/api/login": {"password": st.one_of(st.text(max_size=140), any_json)},
    "/api/thermostat": {"mode": st.one_of(st.sampled_from(["heat", "off", "cool"]), any_json),
                        "setpoint": numbers, "hysteresis": numbers,
                        "utc_offset_min": st.one_of(st.integers(-1000, 1000), numbers),
                        "schedule": schedule},
    "/api/password": {"old": st.one_of(st.text(max_size=20), any_json),
                      "new": st.one_of(st.text(max_size=140), any_json)},
    "/api/consent": {**{p: st.one_of(st.booleans(), any_json) for p in PURPOSES},
                     "advertising": st.booleans()},
    "/api/privacy/delete": {"confirm": confirm},
    "/api/reset": {"confirm": confirm},
}
sched_fields = {f"{k}{i}": v for i in range(9) for k, v in (("at", hhmm), ("sp", st.one_of(
    st.sampled_from(["21", "21.5", "21,5", "4", "31", "-5", "1e3", "nan", ""]),
    st.text(max_size=8))))}
form_text = st.one_of(st.text(max_size=40), st.sampled_from(["yes", "no", "heat", "off", "on"]))
tz = st.one_of(st.sampled_from(["0", "60", "-720", "840", "841", "-721", "5.5", "+60", ""]),
               st.text(max_size=6))
FORM_FIELDS = {
    "/login": {"password": form_text},
    "/logout": {},
    "/setup": {"old": form_text, "new": form_text, "new2": form_text,
               "name": st.text(max_size=50), "tz": tz,
               **{p: form_text for p in PURPOSES}, **{k: v for k, v in sched_fields.items()
                                                     if k[2:] < "5"}},
    "/thermostat": {"mode": form_text, "setpoint": sched_fields["sp0"], "tz": tz,
                    **sched_fields},
    "/consent": {p: form_text for p in PURPOSES},
    "/updates": {"policy": st.one_of(st.sampled_from(["auto", "disabled", "postpone"]),
                                     form_text)},
    "/delete": {"confirm": form_text},
    "/reset": {"confirm": st.one_of(st.sampled_from(["RESET", "reset", "RESET!"]), form_text)},
    "/security": {"old": form_text, "new": form_text, "new2": form_text},
}
GETS = ["/", "/login", "/setup", "/status", "/thermostat", "/updates", "/privacy", "/consent",
        "/delete", "/reset", "/security", "/static/style.css", "/.well-known/security.txt",
        "/api/health", "/api/status", "/api/thermostat", "/api/update", "/api/privacy"]
BODYLESS_POSTS = ["/api/logout"]


def _request(method, path, headers, body, cl="exact"):
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: th"]
    for k, v in headers:
        lines.append(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()))
    if cl == "exact":
        lines.append(b"Content-Length: %d" % len(body))
    elif cl != "missing":
        lines.append(b"Content-Length: " + cl.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@st.composite
def auth(draw, form=False):
    """Headers (and a form's csrf field) for no session, a session, a wrong CSRF token..."""
    kind = draw(st.sampled_from(["none", "session", "session", "session", "no-csrf",
                                 "bad-csrf", "bad-cookie"]))
    headers, field = [], None
    if kind == "bad-cookie":
        headers.append(("Cookie", draw(st.sampled_from(["sid=", "sid=" + "0" * 48, "x=y; sid",
                                                        "sid=" + SID + "; sid=1"]))))
    elif kind != "none":
        headers.append(("Cookie", "sid=" + SID))
    token = {"session": CSRF, "bad-csrf": "f" * 48}.get(kind)
    if token:
        if form:
            field = token
        else:
            headers.append(("X-CSRF-Token", token))
    return headers, field


@st.composite
def json_request(draw):
    path = draw(st.sampled_from(sorted(JSON_FIELDS)))
    method = {"/api/thermostat": "PUT", "/api/consent": "PUT"}.get(path, "POST")
    fields = JSON_FIELDS[path]
    if draw(st.integers(0, 3)):
        keys = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
        doc = {k: draw(fields[k]) for k in keys}
        if not draw(st.integers(0, 5)):
            doc[draw(st.text(max_size=10))] = draw(json_scalars)
        body = json.dumps(doc).encode()
    else:
        body = draw(st.one_of(any_json.map(lambda v: json.dumps(v).encode()),
                              st.binary(max_size=300)))
    headers, _ = draw(auth())
    ctype = draw(st.sampled_from(["application/json"] * 6 + [
        "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded"]))
    headers.append(("Content-Type", ctype))
    cl = draw(st.sampled_from(["exact"] * 12 + ["missing", "0", "-1", "99999999999", "abc",
                                                  str(len(body) + 5), "1 2"]))
    return (method, path), _request(method, path, headers, body, cl)


@st.composite
def form_request(draw):
    path = draw(st.sampled_from(sorted(FORM_FIELDS)))
    fields = FORM_FIELDS[path]
    keys = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields))) \
        if fields else []
    pairs = [(k, draw(fields[k])) for k in keys]
    headers, token = draw(auth(form=True))
    if token:
        pairs.insert(draw(st.integers(0, len(pairs))), ("csrf", token))
    if not draw(st.integers(0, 6)):
        pairs.append((draw(st.text(max_size=10)), draw(st.text(max_size=10))))
    body = urlencode(pairs).encode()
    if not draw(st.integers(0, 8)):  # broken encodings: bad escapes, invalid UTF-8, raw bytes
        body += draw(st.sampled_from([b"&x=%zz", b"&x=%c3%28", b"&%=1", b"&&", b"&a=1&a=2",
                                      b"\xff\xfe", b"&x=%00"]))
    ctype = draw(st.sampled_from(["application/x-www-form-urlencoded"] * 8 + [
        "application/json", "multipart/form-data; boundary=x"]))
    headers.append(("Content-Type", ctype))
    return ("POST", path), _request("POST", path, headers, body)


@st.composite
def get_request(draw):
    path = draw(st.sampled_from(GETS + BODYLESS_POSTS))
    method = "POST" if path in BODYLESS_POSTS else "GET"
    headers, _ = draw(auth())
    target = path
    if not draw(st.integers(0, 4)):
        target += "?" + draw(st.sampled_from(["a=1", "a=%zz", "a=1&a=2", "x", "%c3%28=1",
                                              "&" * 20]))
    return (method, path), _request(method, target, headers, b"")


@st.composite
def raw_request(draw):
    """Whatever a scanner or a broken client sends: garbage, odd methods and paths, bad
    encodings, too many or too long headers, bodies where none belong."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return None, draw(st.binary(max_size=400))
    if kind == 1:
        text = draw(st.text(max_size=300))
        return None, text.encode("utf-8", "surrogatepass") + b"\r\n\r\n"
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
                                   "G3T", "get", "TRACE", "CONNECT", ""]))
    path = draw(st.one_of(st.sampled_from(GETS + sorted(JSON_FIELDS) + sorted(FORM_FIELDS)),
                          st.text(max_size=40).map(lambda t: "/" + quote(t, safe="/%?&=")),
                          st.sampled_from(["/%", "/%zz", "/%c3%28", "/%00", "*", "/" * 300,
                                           "/" + "a" * 5000, "/../../etc/passwd",
                                           "/static/../api/status", "//api/status"])))
    headers = draw(st.lists(st.tuples(
        st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                min_size=1, max_size=20),
        st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))),
        max_size=40 if kind == 5 else 6))
    if kind == 4:
        headers.append(("Transfer-Encoding", "chunked"))
    if kind == 3:
        headers += [("Content-Length", "5"), ("Content-Length", "6")]
    body = draw(st.binary(max_size=200))
    version = draw(st.sampled_from(["HTTP/1.1"] * 5 + ["HTTP/1.0", "HTTP/2", "", "HTTP/1.1 x"]))
    raw = _request(method, path, headers, body).replace(b" HTTP/1.1\r\n",
                                                       (" " + version + "\r\n").encode(), 1)
    return (method, path), raw


@st.composite
def bundle_request(draw, prefix):
    """An update upload whose signed prefix (header, manifest, certificate, signature) has
    1 to 3 bytes changed: refused before a byte is written to the inactive slot."""
    data = bytearray(prefix)
    signed = 64 + int.from_bytes(data[8:12], "little") + int.from_bytes(data[12:14], "little") \
        + 64
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(0, min(signed, len(data)) - 1))] ^= draw(st.integers(1, 255))
    body = bytes(data[:draw(st.integers(1, len(data)))]) if not draw(st.integers(0, 4)) \
        else bytes(data)
    headers, _ = draw(auth())
    headers.append(("Content-Type", draw(st.sampled_from(
        ["application/octet-stream"] * 5 + ["application/json"]))))
    return ("POST", "/api/update"), _request("POST", "/api/update", headers, body)


def all_requests(prefix):
    return st.one_of(json_request(), form_request(), get_request(), raw_request(),
                     bundle_request(prefix))


# --- the device-side harness -------------------------------------------------------------------

class Harness:
    """A device-side harness (tests/device/SCRIPT) on the unix port: frames in on its stdin,
    one JSON line out per frame. `first` is the JSON line it prints once it is ready."""

    def __init__(self, script, *args):
        self.proc = subprocess.Popen(
            [mpy.micropython_path(), str(DEVICE / script)] + [str(a) for a in args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"MICROPYPATH": mpy.device_path("unix")})
        first = self.proc.stdout.readline()
        if not first:
            raise AssertionError("harness did not start: " + self.proc.stderr.read().decode())
        self.first = json.loads(first)

    def send(self, frames):
        for raw in frames:
            self.proc.stdin.write(b"%d\n" % len(raw) + raw)
        self.proc.stdin.flush()
        out = []
        for _ in frames:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("the device harness died:\n" +
                                     self.proc.stderr.read().decode()[-3000:])
            out.append(json.loads(line))
        return out

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def http_harness(simdir, password):
    """tests/device/http_fuzz.py: the device's server, API and pages in-process."""
    h = Harness("http_fuzz.py", simdir, password)
    h.routes = h.first["routes"]
    return h


@pytest.fixture(scope="module")
def harness(tmp_path_factory, keydir, bundles):
    d = tmp_path_factory.mktemp("fuzz") / "dev"
    info = sim.create(d, keydir, bundles["v1"], iterations=1000)
    h = http_harness(d, info["password"])
    yield h
    h.close()


def _complete(raw):
    return b"\r\n\r\n" in raw[:4096]


def _variants(raw, rnd):
    """Two cheap mutants of a drawn request: a changed byte, then a cut, a splice of random
    bytes or a doubled line (their randomness comes from hypothesis, so they replay)."""
    flipped = bytearray(raw)
    if flipped:
        flipped[rnd.randrange(len(flipped))] ^= rnd.randrange(1, 256)
    cut = rnd.randrange(len(raw) + 1)
    kind = rnd.randrange(3)
    if kind == 0:
        other = raw[:cut]
    elif kind == 1:
        other = raw[:cut] + rnd.randbytes(rnd.randrange(1, 40)) + raw[cut:]
    else:
        line = raw.split(b"\r\n")
        i = rnd.randrange(len(line))
        other = b"\r\n".join(line[:i + 1] + line[i:])
    return [bytes(flipped), other]


def test_fuzz_every_endpoint(harness, bundles):
    """10,000 generated requests through the device's own server: no crash, no 5xx, an answer
    to every complete request, and nothing stored changes when a request is refused."""
    targets, statuses = Counter(), Counter()
    t0 = time.monotonic()
    spent = [0.0]
    prefix = bundles["v1"].read_bytes()[:4096]

    # Reproducible everywhere, so that `make test` on a user's clone is the run CI made (a
    # random draw can miss a rarely drawn route and fail the coverage check below by chance);
    # FUZZ_RANDOM=1 varies it. test_byte_fuzz.py adds a random-seed run to every `make test`.
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              derandomize=not os.environ.get("FUZZ_RANDOM"),
              suppress_health_check=list(HealthCheck))
    @given(st.lists(all_requests(prefix), min_size=DRAWN, max_size=DRAWN), st.randoms())
    def run(drawn, rnd):
        batch = []
        for target, raw in drawn:
            batch += [(target, raw)] + [(None, v) for v in _variants(raw, rnd)]
        t = time.monotonic()
        results = harness.send([raw for _, raw in batch])
        spent[0] += time.monotonic() - t
        for (target, raw), r in zip(batch, results):
            what = f"{raw[:300]!r} -> {r}"
            assert r["x"] is None, "crash: " + what
            assert r["s"] is not None or not _complete(raw), "no answer: " + what
            assert r["s"] is None or r["s"] < 500, "server error: " + what
            if r["s"] is not None and r["s"] >= 400:
                assert not r["c"], "a refused request changed stored state: " + what
            targets[target] += 1
            statuses[r["s"]] += 1

    run()
    total = sum(targets.values())
    record_inputs("http", total)
    elapsed = time.monotonic() - t0
    print(f"\nfuzz: {total} requests in {elapsed:.1f} s ({spent[0]:.1f} s on the device); "
          f"statuses {dict(sorted(statuses.items(), key=str))}")
    assert total >= 10_000
    for method, path, _ in harness.routes:  # every route was reached by drawn requests
        assert targets[(method, path)] >= 1, (method, path, targets[(method, path)])
    # Accepted and refused requests of every kind: the generators reach the validators.
    assert statuses[200] > 100 and statuses[422] > 100 and statuses[400] > 500
    assert statuses[401] > 100 and statuses[403] > 100 and statuses[303] > 100


# --- over real TLS, unauthenticated ------------------------------------------------------------

def _tls_exchange(ctx, host, port, name, raw):
    s = socket.create_connection((host, port), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ctx.wrap_socket(s, server_hostname=name) as t:
        t.sendall(raw)
        return _read_all(t)


def test_fuzz_over_tls_changes_nothing(app_device, keydir):
    """Requests from someone without a session, over the real TLS server: every one is
    answered, none with a 5xx, and nothing the owner set or may see changes."""
    d, dev, info = app_device
    dev.login()  # before the fuzzing throttles logins; the session outlives it
    before = [dev.call("GET", p)[1] for p in ("/api/thermostat", "/api/privacy")]
    host, port = push.parse_device(sim.https_address(d))
    ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
    seen = Counter()

    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(json_request(), form_request(), get_request()))
    def run(req):
        target, raw = req
        head, _, body = raw.partition(b"\r\n\r\n")
        m = re.search(rb"\r\nContent-Length: ([^\r]*)", head)
        assume(m is None or m.group(1) == str(len(body)).encode())  # no 10 s read time-outs
        raw = raw.replace(b"sid=" + SID.encode(), b"sid=" + b"0" * 48) \
            .replace(CSRF.encode(), b"0" * 48)
        answer = _tls_exchange(ctx, host, port, info["device_id"], raw)
        assert answer.startswith(b"HTTP/1.1 "), (raw[:200], answer[:200])
        status = int(answer[9:12])
        assert status < 500, (raw[:300], answer[:300])
        assert b"1.0.0" not in answer and info["device_id"].encode() not in answer
        seen[status] += 1

    run()
    assert set(seen) <= {200, 303, 400, 401, 403, 411, 413, 415, 422, 429}, seen
    after = [dev.call("GET", p)[1] for p in ("/api/thermostat", "/api/privacy")]
    for a, b in zip(before, after):
        for volatile in ("temperature", "target", "heating", "ticks", "max_gap_ms"):
            a.pop(volatile, None)
            b.pop(volatile, None)
    assert after == before
    assert dev.call("GET", "/api/health")[0] == 200
