# Simulator control channel: the host drops requests into <sim>/run/inbox (the stand-in for a
# board's USB/serial service port); the device answers in the same folder. Not a network port.
import asyncio
import json
import os

import files
import verdicts
from bundle import Reject


class Request:
    def __init__(self, inbox, rid, doc):
        self.inbox = inbox
        self.rid = rid
        self.op = doc.get("op")
        self.stream = None
        if self.op == "install":
            self.stream = open(inbox + "/" + rid + ".bnd", "rb")

    def reply(self, ok, text, verdict=None, **extra):
        doc = {"ok": ok, "text": text, "verdict": verdict}
        doc.update(extra)
        files.write_json(self.inbox + "/" + self.rid + ".res", doc)

    def close(self):
        if self.stream:
            self.stream.close()
            self.stream = None
        for ext in (".req", ".bnd"):
            try:
                os.remove(self.inbox + "/" + self.rid + ext)
            except OSError:
                pass


class Channel:
    """Polls the inbox; `poll()` returns the oldest pending Request or None."""

    def __init__(self, run_dir):
        self.inbox = run_dir + "/inbox"

    def poll(self):
        try:
            names = sorted(n for n in os.listdir(self.inbox) if n.endswith(".req"))
        except OSError:
            return None
        for name in names:
            rid = name[:-4]
            try:
                with open(self.inbox + "/" + name) as f:
                    doc = json.loads(f.read())
                return Request(self.inbox, rid, doc)
            except (OSError, ValueError) as e:
                req = Request(self.inbox, rid, {})
                req.reply(False, "unreadable request: %s" % e, verdicts.BAD_REQUEST)
                req.close()
        return None


async def serve(boot, channel, poll_ms=100):
    """Normal-mode service task: installs bundles chunk by chunk, yielding to the control loop
    between chunks, and performs resets on request."""
    buf = memoryview(boot.buf)
    while True:
        req = channel.poll()
        if req is None:
            await asyncio.sleep_ms(poll_ms)
            continue
        try:
            if req.op == "install":
                await _install(boot, req, buf)
            elif req.op == "reset":
                req.reply(True, "resetting")
                req.close()
                boot.hal.reset()
            else:
                req.reply(False, "unknown operation %r" % (req.op,), verdicts.BAD_REQUEST)
        finally:
            req.close()


async def _install(boot, req, buf):
    try:
        inst = boot.installer()
    except Reject as e:
        req.reply(False, e.detail, e.verdict)
        return
    try:
        while True:
            n = req.stream.readinto(buf)
            if not n:
                break
            inst.feed(buf[:n])
            await asyncio.sleep_ms(0)
        v = inst.finish()
    except Reject as e:
        boot.log("update refused: %s" % e)
        req.reply(False, e.detail, e.verdict)
    except OSError as e:
        boot.log("update failed: %r" % (e,))
        req.reply(False, "flash error: %r" % (e,), verdicts.IO_ERROR)
    else:
        boot.log("update %s installed into slot %s; boots on next start"
                 % (v.manifest["version"], inst.target))
        req.reply(True, "installed", None, version=v.manifest["version"], slot=inst.target)
    finally:
        inst.abort()
