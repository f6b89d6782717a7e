# The cloud link's outbox: messages waiting for the broker, persisted on the data filesystem.
#
# Bounded (CAPACITY entries of at most MAX_ENTRY bytes): when full, the oldest entry is
# dropped and counted, and the count is persisted. Every entry is its own small file,
# written to a temporary name and renamed (files.write), so a power cut leaves each entry whole
# or absent; once put() returns, the entry survives a power cut. Entries carry a sequence
# number that never goes back (the service sees a gap for every drop), leave in that order,
# and are removed only after the broker's PUBACK (cloud.py). A power cut between a PUBACK
# and the removal sends that entry again: the service drops the duplicate by its seq.
import asyncio
import json
import os

from micropython import const

import files
import store

CAPACITY = const(96)  # 8 h of 5-minute telemetry, plus events
MAX_ENTRY = const(512)  # topic + payload bytes: littlefs keeps files this small inline
_META = "meta.json"  # {"next": seq, "dropped": n}
_TMP = files.TMP  # what files.write writes first


class Outbox:
    """Entries (seq, topic, payload) in the directory `path`. `kind` is a one-letter tag
    kept in the file name, so that purge() can remove one kind (e.g. telemetry whose
    consent was withdrawn) without reading the entries."""

    def __init__(self, path, capacity=CAPACITY, max_entry=MAX_ENTRY, numbered=True):
        self.path = path
        self.numbered = numbered  # False: the seq stays local, never in the payload (telemetry)
        self.capacity = capacity
        self.max_entry = max_entry
        self._ev = asyncio.Event()
        self.reload()

    # --- storage --------------------------------------------------------------------------

    def _name(self, seq, kind):
        return "%s/%010d.%s" % (self.path, seq, kind)

    def _mkdir(self):
        store.makedirs(self.path)

    def _save_meta(self):
        files.write_json(self.path + "/" + _META, {"next": self.next, "dropped": self.dropped})

    def reload(self):
        """Read the directory again (at start, and after someone else emptied it: the
        counters then carry on from where they were, and are saved again)."""
        self._mkdir()
        prev = (getattr(self, "next", 1), getattr(self, "dropped", 0))
        self.next = 1
        self.dropped = 0
        idx = []
        for name in [e[0] for e in os.ilistdir(self.path)]:  # listed before any removal
            if name.endswith(_TMP):  # a put or meta update that a power cut interrupted
                os.remove(self.path + "/" + name)
            elif name == _META:
                try:
                    with open(self.path + "/" + name) as f:
                        meta = json.loads(f.read())
                    self.next = max(self.next, int(meta["next"]))
                    self.dropped = int(meta["dropped"])
                except (OSError, ValueError, KeyError, TypeError):
                    pass
            elif len(name) == 12 and name[10] == "." and name[:10].isdigit():
                idx.append([int(name[:10]), name[11]])
        idx.sort()
        if idx:
            self.next = max(self.next, idx[-1][0] + 1)
        self._idx = idx
        if prev[0] > self.next or prev[1] > self.dropped:
            self.next = max(self.next, prev[0])
            self.dropped = max(self.dropped, prev[1])
            try:
                self._save_meta()
            except OSError:
                pass  # a full filesystem (a deletion filling it): saved with the next change
        if idx:
            self._ev.set()

    def __len__(self):
        return len(self._idx)

    def stats(self):
        return {"queued": len(self._idx), "capacity": self.capacity, "dropped": self.dropped,
                "next_seq": self.next}

    # --- the queue ------------------------------------------------------------------------

    def put(self, topic, doc, kind="e"):
        """Add `doc` (a dict; its "seq" is set here) for `topic`. Persisted when this returns
        its seq. Drops the oldest entries to make room. Raises ValueError if it is larger
        than max_entry, OSError if the filesystem refuses it (counted as a drop)."""
        seq = self.next
        if self.numbered:
            doc["seq"] = seq
        data = topic.encode() + b"\n" + json.dumps(doc).encode()
        if len(data) > self.max_entry:
            raise ValueError("outbox entry of %d bytes over %d" % (len(data), self.max_entry))
        while len(self._idx) >= self.capacity:
            old = self._idx.pop(0)
            self.dropped += 1
            self._save_meta()  # counted first: a power cut can over-count, never hide, a drop
            self._unlink(old)
        self.next = seq + 1
        name = self._name(seq, kind)
        try:
            files.write(name, store.seal(name, data))  # personal data: sealed like the records
        except OSError:
            self.dropped += 1
            try:
                os.remove(name + _TMP)
            except OSError:
                pass
            raise
        self._idx.append([seq, kind])
        self._ev.set()
        return seq

    def _unlink(self, entry):
        try:
            os.remove(self._name(entry[0], entry[1]))
        except OSError:
            pass  # already gone (a deletion emptied the directory)

    def peek(self):
        """The oldest entry as (seq, topic, payload bytes), or None. An unreadable entry is
        discarded and counted as a drop."""
        while self._idx:
            seq, kind = self._idx[0]
            try:
                with open(self._name(seq, kind), "rb") as f:
                    data = f.read()
                data = store.unseal(self._name(seq, kind), data)
                nl = data.index(b"\n")
                return seq, data[:nl].decode(), data[nl + 1:]
            except (OSError, ValueError):
                self._idx.pop(0)
                self.dropped += 1
        return None

    def remove(self, seq):
        """Remove the entry `seq` (after the broker acknowledged it). Missing is fine."""
        for i, e in enumerate(self._idx):
            if e[0] == seq:
                if i == len(self._idx) - 1:
                    self._save_meta()  # keeps `next` when no later entry is left to show it
                self._unlink(e)
                del self._idx[i]
                return True
        return False

    def purge(self, kind):
        """Remove every entry of `kind` (not counted as drops: the owner asked for it).
        Returns how many."""
        self.reload()
        gone = [e for e in self._idx if e[1] == kind]
        if gone:
            self._save_meta()  # keeps `next`: a purged seq is never used again
        for e in gone:
            self._unlink(e)
        self._idx = [e for e in self._idx if e[1] != kind]
        return len(gone)

    async def wait(self):
        """Return when the outbox holds at least one entry."""
        while not self._idx:
            self._ev.clear()
            await self._ev.wait()
