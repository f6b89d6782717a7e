"""A real mosquitto broker on loopback for tests: mutual TLS, client certificates required.

    with Broker(tmp_path) as b:          # or the `mosquitto_broker` fixture
        b.address, b.port                # where it listens: 127.0.0.1, an ephemeral port
        b.host                           # the name its certificate carries: "localhost"
        b.ca_pem, b.ca_der               # the CA that signed the broker and the clients
        b.server["cert_pem"], ...        # the broker's certificate and key
        b.client["cert_der"], ...        # a device certificate (CN "device-1") in DER and PEM
        b.paho_tls(paho_client)          # a host-side client with the `observer` certificate
        b.stop(); b.start()              # an outage, then the broker back on the same port

The broker requires a certificate from the test CA (`require_certificate true`) and takes the
certificate's CN as the MQTT user name (`use_identity_as_username true`); anonymous clients
are refused. Persistence is off unless asked for: then a stop (SIGTERM) saves the sessions
and their queued QoS 1 messages, and a start restores them. The log (`log_type all`) is at
`b.log_path` for tests that look at pings.
"""

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.pki import Pki

MOSQUITTO = os.environ.get("MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port():
    """An ephemeral TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto with a TLS listener on 127.0.0.1 requiring client certificates."""

    def __init__(self, directory, pki=None, port=None, client_name="device-1",
                 persistence=False, server=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki or Pki(self.dir / "pki")
        self.server = server or self.pki.get("broker", server=True)
        self.client = self.pki.get(client_name)
        self.observer = self.pki.get("observer")  # for the host side (paho-mqtt)
        self.host = "localhost"  # the name in the broker's certificate (with 127.0.0.1)
        self.address = "127.0.0.1"  # where it listens: connect here, whatever localhost is
        self._fixed_port = port is not None
        self._started = False
        self.port = port or free_port()
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self.dir / "mosquitto.conf"
        self.persistence = persistence
        self._proc = None
        self._write_conf()

    @property
    def ca_pem(self):
        return self.pki.ca_pem

    @property
    def ca_der(self):
        return self.pki.ca_der

    def issue_client(self, name):
        """Another device certificate from the same CA."""
        return self.pki.issue(name)

    def _write_conf(self):
        user = pwd.getpwuid(os.getuid()).pw_name  # run as root: do not drop to `mosquitto`
        self.conf_path.write_text("\n".join([
            "user %s" % user,
            "persistence %s" % ("true" if self.persistence else "false"),
            "persistence_location %s/" % self.dir,
            "log_dest file %s" % self.log_path,
            "log_type all",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
            "per_listener_settings false",
            "allow_anonymous false",
            "listener %d %s" % (self.port, self.address),
            "cafile %s" % self.pki.ca_pem,
            "certfile %s" % self.server["cert_pem"],
            "keyfile %s" % self.server["key_pem"],
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
            "",
        ]))

    def _listening(self, since):
        # mosquitto logs "running" once its listeners are open; probing the port instead
        # would leave a failed TLS handshake in the log of every test.
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return b" running" in f.read()

    def start(self, timeout=10.0):
        """Start mosquitto and wait until its listener accepts connections."""
        if self._proc is not None:
            return self
        if not self._started and not self._fixed_port:
            for _ in range(3):  # another process may take the free port before mosquitto
                try:
                    return self._start(timeout)
                except RuntimeError as e:
                    if "Address already in use" not in str(e):
                        raise
                    self.port = free_port()
                    self._write_conf()
        return self._start(timeout)

    def _start(self, timeout):
        if not os.access(MOSQUITTO, os.X_OK):
            raise RuntimeError(f"{MOSQUITTO} is missing: run `sh tools/bootstrap` (what "
                               "`make test` does first) or apt-get install mosquitto")
        since = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace")
                self._proc = None
                raise RuntimeError("mosquitto exited: %s\n%s" % (err, self.log()))
            if self.log_path.exists() and self._listening(since):
                self._started = True
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("mosquitto did not listen on port %d\n%s" % (self.port, self.log()))

    def stop(self):
        """Stop the broker (SIGTERM, then SIGKILL); the port is free when this returns."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()

    @property
    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def paho_tls(self, client, cert=None):
        """Configure a paho-mqtt client for this broker (default: the `observer` certificate)."""
        cert = cert or self.observer
        client.tls_set(ca_certs=str(self.ca_pem), certfile=str(cert["cert_pem"]),
                       keyfile=str(cert["key_pem"]))
        return client

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture
def mosquitto_broker(tmp_path):
    """A started `Broker` in the test's tmp_path, stopped afterwards."""
    with Broker(tmp_path / "broker") as b:
        yield b
