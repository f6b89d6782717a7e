"""A connection-exhaustion attacker from another address on the owner's network: sockets that
stay silent (no ClientHello) and sockets that send a real ClientHello one byte at a time,
each reopened as soon as the device drops it. Used by test_attack.py and by the bench
(`owner_served_under_slowloris_fraction`)."""

import selectors
import socket
import ssl
import threading
import time


def client_hello(name):
    """The first flight of a real TLS client (Python's ssl), as bytes on the wire."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class Attack:
    """`idle` silent sockets and `slow` byte-a-time handshakes to host:port from `source`
    (an address of this machine, e.g. 127.0.0.2), kept open until stop(). `opened` and
    `dropped` count connections made and connections the device closed."""

    def __init__(self, host, port, source="127.0.0.2", idle=8, slow=8, name="device",
                 byte_every_s=0.25):
        self.addr = (host, port)
        self.source = source
        self.hello = client_hello(name)
        self.kinds = ["idle"] * idle + ["slow"] * slow
        self.byte_every_s = byte_every_s
        self.opened = self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._open_now = threading.Event()

    def __enter__(self):
        self._thread.start()
        if not self._open_now.wait(10):
            raise AssertionError("the attacker could not open its sockets")
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def _connect(self):
        s = socket.socket()
        s.bind((self.source, 0))
        s.settimeout(2)
        s.connect(self.addr)
        s.setblocking(False)
        self.opened += 1
        return s

    def _run(self):
        sel = selectors.DefaultSelector()
        slots = [None] * len(self.kinds)  # [socket, bytes of the hello sent, next send]
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for i, kind in enumerate(self.kinds):
                    if slots[i] is None:
                        try:
                            s = self._connect()
                        except OSError:
                            continue  # the device's backlog is full: try again next round
                        slots[i] = [s, 0, now]
                        sel.register(s, selectors.EVENT_READ, i)
                    elif kind == "slow" and now >= slots[i][2] and \
                            slots[i][1] < len(self.hello):
                        s, sent, _ = slots[i]
                        try:
                            s.send(self.hello[sent:sent + 1])
                            slots[i][1] += 1
                        except OSError:
                            pass  # dropped: the selector reports it
                        slots[i][2] = now + self.byte_every_s
                if all(slots):
                    self._open_now.set()
                for key, _ in sel.select(0.02):
                    i = key.data
                    s = slots[i][0]
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:  # the device closed it: open another at once
                        sel.unregister(s)
                        s.close()
                        slots[i] = None
                        self.dropped += 1
        finally:
            for slot in slots:
                if slot:
                    slot[0].close()
            sel.close()
