"""Debian's nginx serving a bundle folder over TLS for tests (pulled updates from a standard
web server): a configuration of its own in a temporary folder
(host_tools.cloud.updateserver.nginx_config: certificate from the manufacturer CA, byte ranges),
in the foreground, on a free loopback port, stopped by its PID.

    with Nginx(tmp_path / "nginx", keys_dir, bundle_folder) as web:
        web.url()          # https://127.0.0.1:PORT, for `iotctl publish --server`
        web.requests()     # [{"method", "path", "range", "status", "bytes"}] from its log
"""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from host_tools.cloud import updateserver
from tests.mosquitto import free_port

NGINX = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
_LINE = re.compile(r'(\S+) (\S+) "([^"]*)" (\d+) (\d+)$')


class Nginx:
    def __init__(self, directory, keys_dir, root):
        self.dir = Path(directory)
        self.port = free_port()
        self.conf = updateserver.nginx_config(keys_dir, self.dir, root, self.port)
        self.root = Path(root)
        self._proc = None

    def start(self):
        if not Path(NGINX).exists():
            raise RuntimeError("nginx is not installed: apt-get install nginx")
        self._proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir.resolve()), "-c", str(self.conf.resolve()),
             "-e", str(self.dir.resolve() / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError("nginx exited: " + self._proc.stderr.read().decode()
                                   + (self.dir / "error.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start listening")

    def stop(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()  # its own PID: nothing else is touched
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def requests(self):
        """The file requests nginx logged, oldest first."""
        log = self.dir / "access.log"
        out = []
        for line in (log.read_text().splitlines() if log.exists() else []):
            m = _LINE.match(line)
            if m:
                out.append({"method": m[1], "path": m[2], "range": m[3] if m[3] != "-" else None,
                            "status": int(m[4]), "bytes": int(m[5])})
        return out
