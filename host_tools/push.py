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

from .errors import DeviceError, UsageError, VerifyError

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
    """HTTPS to an address, checking the certificate against a device name (its id)."""

    def __init__(self, host, port, name, context, timeout):
        super().__init__(host, port, context=context, timeout=timeout)
        self._name = name

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._name)


class Device:
    """A logged-in session with one device."""

    def __init__(self, address, password, ca=None, pin=None, name=None, timeout=30.0):
        self.host, self.port = parse_device(address)
        self.ctx, cert = tls_context(ca, pin)
        self.name = name or (pinned_name(cert) if pin else None) or self.host
        self.password = password
        self.timeout = timeout
        self.cookie = None
        self.csrf = None

    def _exchange(self, method, path, body=None, headers=None, progress=None):
        """One request on a fresh connection; returns (response, body bytes)."""
        conn = _Conn(self.host, self.port, self.name, self.ctx, self.timeout)
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
            raise DeviceError(f"the device's certificate is not trusted: {e.verify_message}") from None
        except (OSError, http.client.HTTPException) as e:
            raise DeviceError(f"no answer from {self.host}:{self.port}: {e}") from None
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
        if status != 200:
            raise DeviceError(f"login refused ({status}): {doc.get('message')}")
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


def push(dev, bundle_path, progress=None, wait=True, timeout=90.0):
    """Upload a bundle; with `wait`, follow the device through its restart and trial until it
    confirms the new version or rolls back. Returns a result dict."""
    data = Path(bundle_path).read_bytes()
    before = dev.status()
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
    result = {"from": before["version"], "installed": new, "slot": doc["slot"],
              "notes": doc.get("notes"), "security_fix": doc.get("security_fix"),
              "control_max_gap_ms": doc.get("control_max_gap_ms"),
              "tick_ms": before["thermostat"].get("tick_ms")}
    if not wait:
        return {**result, "result": "installed"}
    time.sleep(doc.get("restarting_in_ms", 800) / 1000)
    deadline = time.monotonic() + timeout
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
    raise DeviceError(f"device neither confirmed nor rolled back within {timeout:.0f} s "
                      f"(last: {last})")
