"""The service side of the cloud link: `iotctl serve` (a static HTTPS update server with Range
support), `iotctl publish` (put a bundle on it and announce it over MQTT), and the service's
credentials, which the manufacturer CA issues, because that CA is what devices pin: the
update server's and the broker's server certificates and the service's MQTT client
certificate. They live in KEYS/service/ (keys 0600, never overwritten)."""

import datetime
import hashlib
import http.server
import json
import os
import re
import shutil
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from .. import bundle
from .. import ca as ca_mod
from ..errors import KeyFileError, Unreachable, UsageError, VerifyError

SERVICE_DIR = "service"
SERVICE_CN = "service"  # the MQTT user name the broker derives from the certificate
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
VALIDITY_DAYS = 825
SPREAD_S = 600  # devices start their downloads spread over this many seconds
_CHUNK = 64 * 1024


# --- credentials -------------------------------------------------------------------------

def service_dir(keys_dir):
    return Path(keys_dir) / SERVICE_DIR


def _issue(keys_dir, name, cn, eku, hosts=()):
    """KEYS/service/<name>.crt and .key, issued by the manufacturer CA. An existing pair is
    reused if it covers `hosts`; otherwise refused (delete it to issue a new one)."""
    d = service_dir(keys_dir)
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    if crt.exists() and key.exists():
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        if hosts:
            try:
                have = set(cert.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                have = set()
            if not set(ca_mod.san(hosts)) <= have:
                raise KeyFileError(f"{crt} does not name {', '.join(hosts)}; remove it (and "
                                f"{key.name}) to issue a new one")
        return crt, key
    ca = ca_mod.load(keys_dir)
    d.mkdir(parents=True, exist_ok=True)
    pkey = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert = ca_mod.issue_leaf(ca, cn, pkey.public_key(), (eku,), hosts,
                             min(now + datetime.timedelta(days=VALIDITY_DAYS),
                                 ca.cert.not_valid_after_utc), now)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pkey.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, key


def server_credentials(keys_dir, name="update-server", hosts=DEFAULT_HOSTS):
    """A TLS server certificate for `hosts` (names or IP addresses) from the manufacturer CA:
    for the update server ("update-server") or the broker ("broker")."""
    if not hosts:
        raise UsageError("a server certificate needs at least one host name or address")
    return _issue(keys_dir, name, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, tuple(hosts))


def service_credentials(keys_dir):
    """The service's MQTT client certificate (CN "service") from the manufacturer CA."""
    return _issue(keys_dir, SERVICE_CN, SERVICE_CN, ExtendedKeyUsageOID.CLIENT_AUTH)


def ca_path(keys_dir):
    path = Path(keys_dir) / ca_mod.CA_CERT
    if not path.exists():
        raise KeyFileError(f"{keys_dir} holds no manufacturer CA ({ca_mod.CA_CERT})")
    return path


ACL = """# Devices (user = certificate CN = device id) use their own topics; the service sees all.
# Telemetry is anonymous (firmware/telemetry.py): any device may write any pseudonym.
pattern write dev/%u/state
pattern write telemetry/+/+
pattern write dev/%u/events
pattern write dev/%u/alert
pattern read dev/%u/cmd
pattern read fleet/#
user service
topic read dev/#
topic read telemetry/#
topic write dev/+/cmd
topic readwrite fleet/#
"""


def broker_config(keys_dir, directory, port=8883, address="127.0.0.1",
                  hosts=DEFAULT_HOSTS, log_path=None, user=None):
    """Write a mosquitto configuration for the cloud link to `directory`: TLS 1.2 with a
    certificate from the manufacturer CA, client certificates required, the CN as user
    name, an ACL that keeps each device to its own topics, and persistent sessions (the
    service misses nothing across a broker restart). `user`: the account
    mosquitto runs as (default: this one, which can read the key). Returns its path."""
    import pwd

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    crt, key = server_credentials(keys_dir, "broker", hosts)
    (d / "acl").write_text(ACL)
    # Persistence: a restarted broker keeps the service's session and the QoS 1 messages
    # queued for it, so what devices deliver right after an outage is not lost.
    lines = [f"user {user or pwd.getpwuid(os.getuid()).pw_name}",
             "per_listener_settings false", "allow_anonymous false", "persistence true",
             f"persistence_location {d.resolve()}/",
             f"acl_file {d.resolve() / 'acl'}", f"listener {port} {address}",
             f"cafile {ca_path(keys_dir).resolve()}", f"certfile {crt.resolve()}",
             f"keyfile {key.resolve()}", "tls_version tlsv1.2", "require_certificate true",
             "use_identity_as_username true"]
    if log_path:
        lines += [f"log_dest file {Path(log_path).resolve()}", "log_type all",
                  "connection_messages true"]
    conf = d / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


# --- a standard web server instead: nginx --------------------------------------------------

NGINX_SERVER = """    server {{
        listen {address}:{port} ssl;
        server_name {names};
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;   # the devices speak TLS 1.2
        root {root};
        location / {{
            limit_except GET {{ deny all; }}   # GET also allows HEAD
            default_type application/octet-stream;
            autoindex off;
            max_ranges 1;                 # devices resume with one Range: bytes=N-
            add_header Cache-Control "no-transform";
        }}
    }}
"""


def nginx_config(keys_dir, directory, root, port=8443, address="127.0.0.1",
                 hosts=DEFAULT_HOSTS):
    """Write a self-contained nginx configuration to `directory` that serves the bundles of
    `root` over TLS with the update server's certificate from the manufacturer CA (the same
    KEYS/service/update-server.crt as `iotctl serve`), byte ranges on, GET and HEAD only.
    Run it as `nginx -p DIRECTORY -c DIRECTORY/nginx.conf -e DIRECTORY/error.log` (it stays
    in the foreground: `daemon off`). The access log records each request's Range and
    status. docs/cloud-link.md has the server block for an existing nginx. Returns its path."""
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    crt, key = server_credentials(keys_dir, "update-server", hosts)
    temp = "\n".join(f"    {t}_temp_path {d}/{t};" for t in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = d / "nginx.conf"
    conf.write_text(f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format range '$request_method $uri "$http_range" $status $body_bytes_sent';
    access_log {d}/access.log range;
{temp}
    sendfile on;
    server_tokens off;
""" + NGINX_SERVER.format(address=address, port=port, names=" ".join(hosts),
                          crt=Path(crt).resolve(), key=Path(key).resolve(),
                          root=Path(root).resolve()) + "}\n")
    return conf


# --- the update server -------------------------------------------------------------------

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "iotctl-serve"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.log:
            self.server.log("%s %s" % (self.address_string(), fmt % args))

    def _file(self):
        name = self.path.split("?", 1)[0].lstrip("/")
        if not name or "/" in name or name.startswith(".") or "\\" in name:
            return None
        path = self.server.directory / name
        return path if path.is_file() else None

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body):
        path = self._file()
        if path is None:
            self._error(404, "no such file")
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = _RANGE.match(rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._error(416, "only one byte range, bytes=N-[M]", size)
                return
            if m.group(1):
                start = int(m.group(1))
                if m.group(2):
                    end = min(int(m.group(2)), size - 1)
            else:  # a suffix: the last N bytes
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                self._error(416, "range outside the file", size)
                return
            status = 206
        self.server.requests.append({"path": self.path, "range": rng, "status": status})
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if not body:
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)
        self.server.served += 1

    def _error(self, status, text, size=None):
        data = (json.dumps({"error": text}) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if size is not None:
            self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(data)


class UpdateServer(http.server.ThreadingHTTPServer):
    """Static files of `directory` over HTTPS (GET/HEAD, one byte range per request)."""

    daemon_threads = True

    def __init__(self, directory, port, keys_dir, address="127.0.0.1", hosts=DEFAULT_HOSTS,
                 log=None):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise UsageError(f"{directory} is not a folder")
        crt, key = server_credentials(keys_dir, "update-server", hosts)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(crt, key)
        self.log = log
        self.served = 0  # complete responses
        self.requests = []  # {"path", "range", "status"} of each file request, for the logs
        try:
            super().__init__((address, port), _Handler)
        except OSError as e:
            raise UsageError(f"cannot listen on {address}:{port}: {e.strerror}") from None
        self.socket = ctx.wrap_socket(self.socket, server_side=True)

    @property
    def port(self):
        return self.server_address[1]

    def url(self, host=None):
        return f"https://{host or self.server_address[0]}:{self.port}"

    def start(self):
        """Serve in a background thread (tests, demo); `shutdown()` stops it."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def handle_error(self, request, client_address):
        pass  # a client that drops mid-download is normal (it resumes with a Range)


# --- publishing --------------------------------------------------------------------------

def parse_broker(text):
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--broker must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def check_channel(channel):
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", channel or ""):
        raise UsageError("a channel is 1 to 32 letters, digits, '.', '_' or '-'")
    return channel


def mqtt_client(keys_dir, client_id, clean=True):
    """A paho-mqtt client with the service's certificate, checking the broker against the
    manufacturer CA (the broker's certificate comes from it too)."""
    try:
        import paho.mqtt.client as paho
    except ImportError:
        raise UsageError("the service side needs paho-mqtt: pip install paho-mqtt") from None
    crt, key = service_credentials(keys_dir)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.tls_set(ca_certs=str(ca_path(keys_dir)), certfile=str(crt), keyfile=str(key),
              tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c


def announce(keys_dir, broker, topic, doc, retain=True, timeout=15.0):
    """Publish `doc` (JSON) on `topic` as the service, QoS 1, and wait for the PUBACK."""
    host, port = parse_broker(broker) if isinstance(broker, str) else broker
    c = mqtt_client(keys_dir, f"service-publish-{os.getpid()}")
    try:
        c.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as e:
        raise Unreachable(f"cannot reach the broker {host}:{port}: {e}") from None
    c.loop_start()
    try:
        info = c.publish(topic, json.dumps(doc, sort_keys=True), qos=1, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise Unreachable(f"the broker {host}:{port} did not acknowledge the announcement "
                              f"within {timeout:g} s")
    finally:
        c.disconnect()
        c.loop_stop()


def publish(bundle_path, channel, server_url, broker, keys_dir, directory, spread_s=SPREAD_S,
            verify=True, security_fix=None, rollout=None, halt_failures=None, halt_after=None,
            db=None, timeout=15.0):
    """Copy a signed bundle into the served `directory` (with its SHA-256 beside it) and
    announce {url, sha256, size, version, spread_s} on fleet/<product>/<channel>, retained.
    With `verify`, the bundle must first pass the device's own verifier under `keys_dir`.
    With `rollout` (a percentage), a staged rollout (host_tools/cloud/rollout.py) kept in `db`
    (default KEYS/service/rollouts.sqlite) offers it to that share of the channel."""
    check_channel(channel)
    if rollout is not None:
        from . import rollout as rollout_mod

        rollout_mod.check_percent(rollout)  # before anything is copied or stored
        halt_failures = rollout_mod.HALT_FAILURES if halt_failures is None else halt_failures
        halt_after = rollout_mod.HALT_AFTER if halt_after is None else halt_after
        rollout_mod.check_halt(halt_failures, halt_after)
    src = Path(bundle_path)
    data = src.read_bytes()
    info = bundle.parse(data)  # VerifyError for a file that is not a bundle
    m = info.manifest
    if verify:
        from .. import verify as verify_mod

        verdict = verify_mod.device_verdict(src, keys_dir)
        if not verdict["ok"]:
            raise VerifyError(verdict["verdict"], verdict["text"])
    if not server_url.startswith("https://"):
        raise UsageError("--server must be an https:// URL: devices download only over TLS")
    if not 0 <= spread_s <= 86400:
        raise UsageError("--spread must be 0 to 86400 seconds")
    sha = hashlib.sha256(data).hexdigest()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = f"{m['product']}-{m['version']}-{sha[:12]}.bin"
    tmp = d / (name + ".tmp")
    if not (d / name).exists():
        shutil.copyfile(src, tmp)
        os.replace(tmp, d / name)
    (d / (name + ".sha256")).write_text(f"{sha}  {name}\n")
    doc = {"url": f"{server_url.rstrip('/')}/{name}", "sha256": sha, "size": len(data),
           "version": m["version"], "spread_s": int(spread_s),
           "security_fix": bool(m.get("security_fix") if security_fix is None else security_fix)}
    topic = f"fleet/{m['product']}/{channel}"
    if rollout is None:
        announce(keys_dir, broker, topic, doc, timeout=timeout)
        return {"topic": topic, "file": str(d / name), "announcement": doc}
    service_dir(keys_dir).mkdir(parents=True, exist_ok=True)
    with rollout_mod.Store.open(db or rollout_mod.default_db(keys_dir)) as st:
        r = st.create(doc, m["product"], channel, rollout, halt_failures, halt_after)
        doc = st.announcement(r)
        try:
            announce(keys_dir, broker, topic, doc, timeout=timeout)
        except Exception:
            st.delete(r["rollout_id"])  # not announced: no rollout
            raise
        return {"topic": topic, "file": str(d / name), "announcement": doc,
                "rollout": st.status(r["rollout_id"])}
