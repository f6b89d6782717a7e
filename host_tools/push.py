"""Talk to a device's local API over TLS: status, and pushing a signed update bundle, then
waiting for the device to confirm the new version or roll back (and saying why)."""

import http.client
import json
import socket
import ssl
import time
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from . import verify
from .errors import (AuthRefused, DeviceError, IdentityMismatch, Unreachable, UsageError,
                     VerifyError)

CHUNK = 16 * 1024


def parse_device(text):
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--device must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _load_cert(path):
    data = Path(path).read_bytes()
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data \
            else x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise UsageError(f"{path} is not a certificate: {e}") from None


def tls_context(ca=None, pin=None):
    """Verify the device against the manufacturer CA, or against one pinned certificate
    (trusted as its own anchor, so nothing else is accepted). Hostname checks stay on."""
    if bool(ca) == bool(pin):
        raise UsageError("give exactly one of --ca (manufacturer CA) or --pin (device certificate)")
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = _load_cert(ca or pin)
    ctx = ssl.create_default_context(cadata=cert.public_bytes(Encoding.PEM).decode())
    if pin:
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx, cert


def pinned_name(cert):
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else None


class _Conn(http.client.HTTPSConnection):
    """HTTPS to an address, checking the certificate against a device name (its id).
    `phase` says what the connection is waiting for (for the time-out message)."""

    def __init__(self, host, port, name, context, timeout):
        super().__init__(host, port, context=context, timeout=timeout)
        self._name = name
        self.phase = "the TCP connection"

    def connect(self):
        self.phase = "the TCP connection"
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.phase = "the TLS handshake"
        self.sock = self._context.wrap_socket(sock, server_hostname=self._name)
        self.phase = "the answer to the request"


class Device:
    """A logged-in session with one device."""

    def __init__(self, address, password, ca=None, pin=None, name=None, timeout=30.0):
        self.host, self.port = parse_device(address)
        self.ctx, cert = tls_context(ca, pin)
        self.name = name or (pinned_name(cert) if pin else None) or self.host
        self.password = password
        self.timeout = timeout
        self.deadline = None  # time.monotonic() by which everything must be done (push)
        self.cookie = None
        self.csrf = None

    def _budget(self):
        """Seconds the next exchange may wait: `timeout`, cut to what is left of `deadline`."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Unreachable(f"{self.host}:{self.port}: the time limit ran out")
        return min(self.timeout, left)

    def _exchange(self, method, path, body=None, headers=None, progress=None):
        """One request on a fresh connection; returns (response, body bytes)."""
        budget = self._budget()
        conn = _Conn(self.host, self.port, self.name, self.ctx, budget)
        hdrs = dict(headers or {})
        try:
            if isinstance(body, (bytes, bytearray)) and progress:
                hdrs["Content-Length"] = str(len(body))
                conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                conn.endheaders()
                view = memoryview(body)
                for off in range(0, len(body), CHUNK):
                    conn.send(view[off:off + CHUNK])
                    progress(min(off + CHUNK, len(body)))
            else:
                conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp, resp.read()
        except ssl.SSLCertVerificationError as e:
            raise IdentityMismatch(f"the certificate of {self.host}:{self.port} is not trusted "
                                   f"as device {self.name}: {e.verify_message}") from None
        except TimeoutError:
            raise Unreachable(f"no answer from {self.host}:{self.port} within {budget:.3g} s "
                              f"(waiting for {conn.phase})") from None
        except ConnectionRefusedError:
            raise Unreachable(f"cannot reach {self.host}:{self.port}: connection refused "
                              "(is the device on, and is this its API port?)") from None
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f"no answer from {self.host}:{self.port} (waiting for "
                              f"{conn.phase}): {e}") from None
        finally:
            conn.close()

    def _session(self, method, headers):
        hdrs = dict(headers or {})
        if self.cookie:
            hdrs["Cookie"] = self.cookie
        if self.csrf and method not in ("GET", "HEAD"):
            hdrs["X-CSRF-Token"] = self.csrf
        return hdrs

    def _request(self, method, path, body=None, headers=None, progress=None):
        resp, raw = self._exchange(method, path, body, self._session(method, headers), progress)
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {"message": raw[:200].decode(errors="replace")}
        return resp.status, doc, resp

    def fetch(self, path):
        """GET `path` without logging in; returns (status, body bytes)."""
        resp, raw = self._exchange("GET", path)
        return resp.status, raw

    def page(self, path, form=None):
        """An owner page in this session: GET, or POST `form` (a dict, sent with the session's
        CSRF token as the pages' forms send it). Returns (status, HTML bytes)."""
        if form is None:
            resp, raw = self._exchange("GET", path, None, self._session("GET", None))
        else:
            body = urllib.parse.urlencode(dict(form, csrf=self.csrf)).encode()
            resp, raw = self._exchange("POST", path, body, self._session(
                "POST", {"Content-Type": "application/x-www-form-urlencoded"}))
        return resp.status, raw

    def login(self):
        status, doc, resp = self._request("POST", "/api/login",
                                          json.dumps({"password": self.password}).encode(),
                                          {"Content-Type": "application/json"})
        if status in (401, 403, 429):
            raise AuthRefused(f"login refused ({status}): {doc.get('message')}")
        if status != 200:
            raise DeviceError(f"login failed ({status}): {doc.get('message')}")
        self.cookie = resp.getheader("Set-Cookie", "").split(";")[0]
        self.csrf = doc["csrf"]

    def call(self, method, path, body=None, headers=None, progress=None):
        if not self.cookie:
            self.login()
        status, doc, _ = self._request(method, path, body, headers, progress)
        if status == 401:  # session gone (e.g. the device restarted): log in again once
            self.login()
            status, doc, _ = self._request(method, path, body, headers, progress)
        return status, doc

    def status(self):
        status, doc = self.call("GET", "/api/status")
        if status != 200:
            raise DeviceError(f"status refused ({status}): {doc.get('message')}")
        return doc


def parse_version(text):
    """"1.10.2" -> (1, 10, 2); anything after a '-' or '+' is ignored. None if not numeric."""
    core = str(text or "").split("+", 1)[0].split("-", 1)[0]
    try:
        return tuple(int(x) for x in core.split("."))
    except ValueError:
        return None


def version_change(old, new):
    """"upgrade", "downgrade", "same" or "unknown" (a version that is not dotted numbers)."""
    a, b = parse_version(old), parse_version(new)
    if a is None or b is None:
        return "same" if old == new else "unknown"
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return "upgrade" if b > a else "downgrade" if b < a else "same"


def push(dev, bundle_path, progress=None, wait=True, timeout=90.0, allow_downgrade=False):
    """Upload a bundle; with `wait`, follow the device through its restart and trial until it
    confirms the new version or rolls back. Returns a result dict, whose `change` says
    whether the device's version went up or down. `timeout` bounds the whole push (every
    exchange and the wait). An app bundle older than the running version is refused
    (VerifyError DOWNGRADE) unless `allow_downgrade`; the device itself still refuses any
    bundle below its security floor."""
    started = time.monotonic()
    dev.deadline = started + timeout
    try:
        return _push(dev, bundle_path, progress, wait, timeout, allow_downgrade, started)
    finally:
        dev.deadline = None


def _push(dev, bundle_path, progress, wait, timeout, allow_downgrade, started):
    try:
        data = Path(bundle_path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {bundle_path}: {e.strerror or e}") from None
    try:
        described = verify.describe(bundle_path)
        manifest = described["manifest"] if isinstance(described["manifest"], dict) else {}
        kind = described["kind"]
    except VerifyError:  # not a bundle the host can read: the device gives the exact verdict
        manifest, kind = {}, None
    before = dev.status()
    # the status version is the app's: a firmware bundle's version is not comparable to it
    change = version_change(before["version"], manifest.get("version")) if kind == "app" \
        else "unknown"
    if kind == "app" and change == "downgrade" and not allow_downgrade:
        raise VerifyError("VERSION_DOWNGRADE",
                          f"the device runs {before['version']}; this bundle is "
                          f"{manifest.get('version')} (use --allow-downgrade to install an "
                          "older version on purpose)",
                          {"from": before["version"], "bundle_version": manifest.get("version")})
    status, doc = dev.call("POST", "/api/update", data,
                           {"Content-Type": "application/octet-stream"}, progress)
    if status != 200:
        msg = doc.get("message") or ""
        if status in (409, 422) and ":" in msg:
            verdict, detail = (part.strip() for part in msg.split(":", 1))
        else:
            verdict, detail = "REFUSED", f"device refused the update ({status}): {msg}"
        raise VerifyError(verdict, detail)
    new = doc["version"]
    result = {"from": before["version"], "installed": new, "change": change, "slot": doc["slot"],
              "notes": doc.get("notes"), "security_fix": doc.get("security_fix"),
              "control_max_gap_ms": doc.get("control_max_gap_ms"),
              "tick_ms": before["thermostat"].get("tick_ms")}
    if not wait:
        return {**result, "result": "installed"}
    result["upload_s"] = round(time.monotonic() - started, 3)
    time.sleep(doc.get("restarting_in_ms", 800) / 1000)
    deadline = dev.deadline
    last = None
    while time.monotonic() < deadline:
        try:
            st = dev.status()
        except DeviceError as e:  # restarting: refused connections until it is back
            last = str(e)
            time.sleep(0.3)
            continue
        last = f"version {st['version']}, trial {st['trial']}"
        if st["version"] == new and not st["trial"]:
            return {**result, "result": "confirmed", "version": new, "slot": st["slot"]}
        # the installer wrote "installed ..." as the last event, so a rollback is this one's
        if (st.get("last_event") or "").startswith("rolled back"):
            return {**result, "result": "rolled_back", "version": st["version"],
                    "slot": st["slot"], "reason": st["last_event"]}
        time.sleep(0.3)
    raise Unreachable(f"device neither confirmed nor rolled back within {timeout:g} s "
                      f"(last: {last})")
