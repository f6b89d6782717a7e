"""Byte-level fuzzing of what else a device parses from outside (ETSI TS 103 645 4.13), through
tests/device/byte_fuzz.py on a provisioned simulated device: the MQTT client against a
hostile broker, the update stream, and the factory records (trust anchors, password record,
cloud entry of the identity). Each run draws a fixed seed and a random one (printed, so a
failure can be replayed with FUZZ_SEED). Properties: no crash, every update stream refused
with a verdict and nothing stored changed, every record accepted or refused with the error
its caller handles. FUZZ_SCALE multiplies the counts (`make fuzz`)."""

import json
import os
import random
import socket
import struct
from collections import Counter

import pytest

from host_tools import sim

from .test_fuzz import SCALE, Harness, record_inputs

# Inputs per seed, before FUZZ_SCALE: ~9,000 per run of `make test` (two seeds).
COUNTS = {"m": 1200, "b": 150, "a": 1000, "p": 1000, "i": 1000}


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pkt(first, body):
    return bytes([first]) + _varint(len(body)) + body


def _mutate(rnd, data, most=3):
    data = bytearray(data)
    for _ in range(rnd.randint(1, most)):
        op = rnd.randrange(5)
        pos = rnd.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1 and data:
            data[min(pos, len(data) - 1)] = rnd.randrange(256)
        elif op == 2:
            data[pos:pos] = rnd.randbytes(rnd.randint(1, 8))
        elif op == 3:
            del data[pos:pos + rnd.randint(1, 8)]
        else:
            data = data[:pos]
    return bytes(data)


def _topic(rnd):
    return rnd.choice([b"dev/th-1/cmd", b"fleet/iot-thermostat/stable", b"", b"a/+/b", b"#",
                       b"\xff\xfe", b"x\x00y", b"t" * rnd.randint(1, 300), rnd.randbytes(6)])


def broker_stream(rnd):
    """What a hostile broker sends after CONNECT: mostly a CONNACK then packets, some bent."""
    out = [rnd.choice([b"\x20\x02\x00\x00"] * 6 + [b"\x20\x02\x01\x00", b"\x20\x02\x00\x05",
                                                   b"\x20\x02\x01\x03", b"\x20\x03\x00\x00\x00",
                                                   b"\x21\x02\x00\x00", b"\x30\x00", b""])]
    for _ in range(rnd.randint(0, 6)):
        kind = rnd.randrange(9)
        if kind <= 2:
            qos = rnd.choice([0, 0, 1, 1, 2, 3])
            flags = (qos << 1) | rnd.choice([0, 0, 1, 8, 9])
            t = _topic(rnd)
            pid = struct.pack(">H", rnd.choice([1, 2, 0, 65535])) if qos else b""
            payload = rnd.choice([b'{"cmd":"check_update"}', b"", rnd.randbytes(rnd.randint(
                0, 200)), b"p" * rnd.choice([1000, 16380, 20000])])
            out.append(_pkt(0x30 | flags, struct.pack(">H", len(t)) + t + pid + payload))
        elif kind == 3:
            out.append(_pkt(rnd.choice([0x40, 0xB0, 0x41]), struct.pack(">H", rnd.choice(
                [1, 0, 7])) + rnd.choice([b"", b"", b"x"])))
        elif kind == 4:
            out.append(_pkt(0x90, struct.pack(">H", rnd.choice([1, 0])) +
                            bytes(rnd.choice([[0], [1], [2], [0x80], [3], []]))))
        elif kind == 5:
            out.append(rnd.choice([b"\xd0\x00", b"\xd0\x01\x00", b"\xd1\x00"]))
        elif kind == 6:  # packet types a broker never sends, and reserved ones
            out.append(_pkt(rnd.choice([0x10, 0x20, 0x50, 0x62, 0x70, 0x82, 0xA2, 0xC0, 0xE0,
                                        0xF0, 0x00]), rnd.randbytes(rnd.randint(0, 6))))
        elif kind == 7:  # lengths: huge, over 4 bytes, cut
            out.append(rnd.choice([b"\x30\xff\xff\xff\x7f", b"\x30\xff\xff\xff\xff\x01",
                                   b"\x30\x80\x80\x80\x80\x80", b"\x30\x81\x80\x01" + b"x" * 9,
                                   b"\x30"]))
        else:
            out.append(rnd.randbytes(rnd.randint(1, 40)))
    data = b"".join(out)
    return _mutate(rnd, data) if data and rnd.random() < 0.4 else data


def update_stream(rnd, bundle):
    """A bundle with 1-3 bytes changed (mostly in its signed prefix) and/or cut short: never
    the bundle itself, so never one to install."""
    prefix = 64 + int.from_bytes(bundle[8:12], "little") + \
        int.from_bytes(bundle[12:14], "little") + 64
    data = bytearray(bundle[:prefix + rnd.randint(0, 6000)])
    changed = len(data) < len(bundle)
    for _ in range(rnd.randint(0 if changed else 1, 3)):
        where = rnd.randrange(prefix) if rnd.random() < 0.8 else rnd.randrange(len(data))
        data[where] ^= rnd.randrange(1, 256)
    if rnd.random() < 0.15:
        data = bytearray(_mutate(rnd, data, 2))
    return bytes([rnd.randrange(256)]) + bytes(data)  # the first byte: the chunk size


def _json_bend(rnd, value):
    """`value` with one part replaced by something of another type or out of range."""
    odd = rnd.choice([None, True, 0, -1, 2**70, 1.5, "", "x" * 300, [], {}, [1, 2], "ed25519",
                      "ff" * 32, "zz"])
    if isinstance(value, dict) and value and rnd.random() < 0.8:
        k = rnd.choice(sorted(value))
        out = dict(value)
        r = rnd.random()
        if r < 0.2:
            del out[k]
        elif r < 0.3:
            out[rnd.choice(["extra", k + "x", ""])] = odd
        else:
            out[k] = _json_bend(rnd, value[k])
        return out
    if isinstance(value, list) and value and rnd.random() < 0.8:
        out = list(value)
        i = rnd.randrange(len(out))
        out[i] = _json_bend(rnd, out[i])
        return out if rnd.random() < 0.8 else out * rnd.randint(0, 3)
    return odd


def record(rnd, base):
    doc = base
    for _ in range(rnd.randint(0, 3)):
        doc = _json_bend(rnd, doc)
    raw = json.dumps(doc).encode()
    r = rnd.random()
    if r < 0.25:
        raw = _mutate(rnd, raw)
    elif r < 0.3:
        raw = rnd.choice([b"", b"[" * 400 + b"]" * 400, b"\xef\xbb\xbf" + raw, raw + b"\x00"])
    return raw


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def device(tmp_path_factory, keydir, bundles):
    d = tmp_path_factory.mktemp("bytefuzz") / "dev"
    sim.create(d, keydir, bundles["v1"], iterations=1000)
    h = Harness("byte_fuzz.py", d, _free_port())
    yield h, d
    h.close()


BASES = {  # well-formed records the generators bend
    "a": {"roots": [{"alg": "ed25519", "key": "11" * 32}], "key_floor": 1},
    "p": {"alg": "pbkdf2-sha256", "iterations": 1000, "salt": "00" * 16, "hash": "11" * 32},
    "i": {"device_id": "th-1", "cloud": {"host": "127.0.0.1", "port": 8883, "name": "broker",
                                         "channel": "stable", "telemetry_s": 60,
                                         "keepalive_s": 60,
                                         "backoff": {"base_ms": 1000, "cap_ms": 60000}}},
}


def _inputs(seed, bundle, bases):
    rnd = random.Random(seed)
    out = []
    for kind, n in COUNTS.items():
        for _ in range(n * SCALE):
            if kind == "m":
                data = broker_stream(rnd)
            elif kind == "b":
                data = update_stream(rnd, bundle)
            else:
                data = record(rnd, bases[kind])
            out.append(kind.encode() + data)
    rnd.shuffle(out)
    return out


@pytest.mark.parametrize("seed", [20261206, None], ids=["fixed-seed", "random-seed"])
def test_byte_fuzz_broker_update_stream_factory_records(device, bundles, seed):
    h, d = device
    seed = int(os.environ.get("FUZZ_SEED", "0")) or seed or random.randrange(2**32)
    print(f"\nbyte fuzz seed {seed} (replay: FUZZ_SEED={seed})")
    inputs = _inputs(seed, bundles["v1"].read_bytes(), BASES)
    outcomes = Counter()
    for i in range(0, len(inputs), 200):
        batch = inputs[i:i + 200]
        for raw, r in zip(batch, h.send(batch)):
            kind = chr(raw[0])
            what = f"seed {seed}, {kind}: {raw[1:200]!r} -> {r}"
            assert r["x"] is None, "crash: " + what
            assert r["v"], what
            if kind == "b":
                assert r["v"] != "ACCEPTED", "a changed update stream installed: " + what
                assert not r["c"], "a refused update changed stored state: " + what
            elif kind in "api":
                assert r["v"] == "accepted" or r["v"].startswith("refused: "), what
            outcomes[(kind, r["v"].split(",")[0] if kind == "m" else r["v"])] += 1
    total = sum(outcomes.values())
    print(f"byte fuzz: {total} inputs: {dict(sorted(outcomes.items()))}")
    record_inputs("byte_fuzz", total)
    assert total == len(inputs)
    # The generators reach past the first check of each parser.
    got = {k: sum(n for (kind, v), n in outcomes.items() if kind == k and pred(v))
           for k, pred in (("m", lambda v: "messages" in v), ("a", lambda v: v == "accepted"),
                           ("i", lambda v: v == "accepted"),
                           ("b", lambda v: v not in ("BAD_MAGIC", "TRUNCATED")))}
    assert all(got.values()), got
