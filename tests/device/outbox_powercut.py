# Power-loss sweep of the cloud link's outbox (firmware/outbox.py) on the strict NOR flash
# model, mcuboot's perm_with_fails style: run a scenario of puts (past the capacity, so the
# oldest are dropped), deliveries (peek + remove) and a purge once to count its flash
# operations; then for every operation n: restore the empty filesystem, cut the power at n,
# remount and check that nothing acknowledged is lost or altered, the order holds, seqs
# never go back and the drop counter is exact (or one over, for a drop torn mid-way).
#   micropython outbox_powercut.py WORK.bin TABLE.csv   (firmware/ on MICROPYPATH)
import json
import sys


import flash
from flash import PowerCut
from outbox import Outbox

CAP = 4
N_PUTS = 40  # enough for littlefs to compact the directory (erases) several times
DIR = "/data/privacy/outbox"


def payload(i):
    return {"t": 1700000000 + i, "temperature": 20.0 + i / 16, "note": "x" * (i % 7 * 20)}


class Model:
    """What the outbox must hold: entries whose put returned, minus those dropped or removed."""

    def __init__(self):
        self.live = []  # [seq, topic, payload bytes]
        self.dropped = 0
        self.max_acked = 0
        self.torn = None  # (op, seq that may legitimately be gone)
        self.torn_put = None  # (seq, topic, payload) of a put the cut interrupted


def scenario(fl, table, m):
    flash.mount_data(fl, "/data", "vfs")
    ob = Outbox(DIR, capacity=CAP)
    kinds = "tete"
    for i in range(N_PUTS):
        topic = "dev/x/" + ("telemetry" if kinds[i % 4] == "t" else "events")
        doc = payload(i)
        expect = ob.next
        same = payload(i)
        same["seq"] = expect  # as put() does it: same keys, same order
        body = json.dumps(same).encode()
        m.torn = ("put", m.live[0][0] if len(m.live) >= CAP else None)
        m.torn_put = (expect, topic, body)
        seq = ob.put(topic, doc, kinds[i % 4])
        assert seq == expect
        m.torn = m.torn_put = None
        if len(m.live) >= CAP:
            m.live.pop(0)
            m.dropped += 1
        m.live.append([seq, topic, body])
        m.max_acked = seq
        if i % 3 == 2:  # a delivery: the oldest leaves once acknowledged
            e = ob.peek()
            assert e[0] == m.live[0][0] and e[2] == m.live[0][2], (e, m.live[0])
            m.torn = ("remove", e[0])
            ob.remove(e[0])
            m.torn = None
            m.live.pop(0)
        if i == 21:
            gone = [e[0] for e in m.live if e[1].endswith("telemetry")]
            m.torn = ("purge", gone)
            ob.purge("t")
            m.torn = None
            m.live = [e for e in m.live if not e[1].endswith("telemetry")]
    while True:  # everything delivered
        e = ob.peek()
        if e is None:
            break
        m.torn = ("remove", e[0])
        ob.remove(e[0])
        m.torn = None
        m.live.pop(0)
    flash.unmount("/data")


def entries(ob):
    out = []
    for seq, kind in ob._idx:
        with open(ob._name(seq, kind), "rb") as f:
            data = f.read()
        nl = data.index(b"\n")
        out.append([seq, data[:nl].decode(), data[nl + 1:]])
    return out


def check(fl, m):
    """Mount after the cut and compare with the model; returns a list of problems."""
    problems = []
    flash.mount_data(fl, "/data", "vfs")
    try:
        ob = Outbox(DIR, capacity=CAP)
        got = entries(ob)
        seqs = [e[0] for e in got]
        if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
            problems.append("order: %r" % seqs)
        may_miss = set()
        if m.torn:
            op, s = m.torn
            may_miss = set(s) if isinstance(s, list) else {s}
        by_seq = {e[0]: e for e in got}
        for e in m.live:
            if e[0] not in by_seq and e[0] not in may_miss:
                problems.append("acknowledged entry %d lost" % e[0])
            elif e[0] in by_seq and by_seq[e[0]] != e:
                problems.append("entry %d altered" % e[0])
        known = {e[0] for e in m.live}
        for e in got:
            if e[0] not in known:
                if not (m.torn_put and list(m.torn_put) == e):
                    problems.append("unexpected entry %r" % e)
        if ob.next <= m.max_acked:
            problems.append("next seq %d reuses an acknowledged one (%d)" % (ob.next, m.max_acked))
        extra = 1 if m.torn and m.torn[0] == "put" and m.torn[1] is not None else 0
        if not m.dropped <= ob.dropped <= m.dropped + extra:
            problems.append("dropped %d, expected %d (+%d)" % (ob.dropped, m.dropped, extra))
        # The outbox keeps working after the cut.
        seq = ob.put("dev/x/events", {"after": "cut"})
        if seq <= m.max_acked or ob.peek() is None:
            problems.append("outbox unusable after the cut")
        ob2 = Outbox(DIR, capacity=CAP)
        if [e[0] for e in entries(ob2)] != [e[0] for e in entries(ob)]:
            problems.append("a second mount disagrees")
    finally:
        flash.unmount("/data")
    return problems


def restore(work, template):
    with open(work, "r+b") as f:
        f.write(template)


def main(work, table):
    fl = flash.Flash(work, table)
    flash.mount_data(fl, "/data", "vfs")  # formats the blank partition
    flash.unmount("/data")
    fl.close()
    with open(work, "rb") as f:
        template = f.read()  # the empty filesystem: small, kept in RAM
    fl = flash.Flash(work, table)
    m = Model()
    scenario(fl, table, m)
    total = fl.ops
    fl.close()
    assert m.live == [] and m.dropped > 0, (m.live, m.dropped)
    failures = []
    torn_kinds = {}
    for n in range(1, total + 1):
        restore(work, template)
        fl = flash.Flash(work, table)
        fl.cut_at(n)
        m = Model()
        try:
            scenario(fl, table, m)
            failures.append("cut %d: scenario finished without the power cut" % n)
        except PowerCut:
            pass
        flash.unmount("/data")
        fl.close()
        fl = flash.Flash(work, table)
        kind = m.torn[0] if m.torn else "none"
        torn_kinds[kind] = torn_kinds.get(kind, 0) + 1
        for p in check(fl, m):
            failures.append("cut %d (%s): %s" % (n, kind, p))
        fl.close()
    return {"cut_points": total, "torn": torn_kinds, "failures": failures}


print(json.dumps(main(sys.argv[1], sys.argv[2])))
