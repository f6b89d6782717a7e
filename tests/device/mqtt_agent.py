# Device side of test_mqtt against a real broker (and of bench/mqtt.py): the firmware's
# Link and Client over mutual TLS, driven by JSON lines on stdin, reporting JSON lines.
# Usage: micropython mqtt_agent.py CONFIG.json
#   config: host, port, ca, cert, key (DER paths; no cert/key: connect without one),
#           client_id, keepalive, will [topic, payload, qos, retain] or null,
#           server_hostname, backoff {base_ms, cap_ms, initial_window_ms, stable_ms, seed},
#           mode "link" (default: run the Link, take commands) or "once" (one connect).
#   commands: {"cmd": "pub", "topic", "payload", "qos", "retain"}  -> {"ev": "pub", "pid"}
#             {"cmd": "sub", "topic", "qos"} -> {"ev": "sub"}
#             {"cmd": "acked"} (all in-flight acknowledged) -> {"ev": "acked"}
#             {"cmd": "stats"} -> {"ev": "stats", ...}
#             {"cmd": "rtt", "n"} -> {"ev": "rtt", "puback_us": [...], "echo_us": [...]}
#             {"cmd": "quit"} -> clean DISCONNECT, {"ev": "bye"}
#   events: {"ev": "up"}, {"ev": "down", "err"}, {"ev": "msg", "topic", "payload", "retain"},
#           {"ev": "error", "cmd", "type", "msg"}
import asyncio
import json
import ssl
import sys
import time

import mqtt
import mqttlink
import tlsctx
from backoff import Backoff, XorShift32


def emit(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def context(cfg):
    if cfg.get("cert"):
        return tlsctx.client(read(cfg["ca"]), read(cfg["cert"]), read(cfg["key"]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # a device without its certificate
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=read(cfg["ca"]))
    return ctx


def make_client(cfg):
    will = cfg.get("will")
    if will:
        will = (will[0], will[1].encode(), will[2], will[3])
    return mqtt.Client(cfg.get("client_id", "device-1"), cfg["host"], cfg["port"], context(cfg),
                       server_hostname=cfg.get("server_hostname"),
                       keepalive_s=cfg.get("keepalive", 60), will=will,
                       timeout_ms=cfg.get("timeout_ms", 5000))


async def once(cfg):
    c = make_client(cfg)
    try:
        session = await c.connect()
    except (OSError, mqtt.MQTTError, asyncio.TimeoutError) as e:
        emit(ev="error", cmd="connect", type=type(e).__name__, msg=str(e))
        return
    emit(ev="connected", session=session)
    await c.disconnect()


async def watch(link):
    while True:
        await link.up.wait()
        emit(ev="up")
        await link.down.wait()
        emit(ev="down", err=repr(link.last_error))


ECHO = "rtt/echo"
echo = [asyncio.Event(), None]  # the rtt command's own deliveries, not reported


async def inbox(link):
    while True:
        topic, payload, retain = await link.message()
        if topic == ECHO:
            echo[1] = payload
            echo[0].set()
        else:
            emit(ev="msg", topic=topic, payload=payload.decode(), retain=retain)


async def rtt(link, n):
    # QoS 1 publish to PUBACK, and publish to our own subscription's delivery.
    c = link.client
    await c.subscribe(ECHO, 0)
    puback, echo_us = [], []
    for _ in range(n):
        t0 = time.ticks_us()
        pid = await c.publish("rtt/ack", b"x" * 32, 1)
        await c.wait_acked(pid)
        puback.append(time.ticks_diff(time.ticks_us(), t0))
    for i in range(n):
        echo[0].clear()
        t0 = time.ticks_us()
        await c.publish(ECHO, b"%d" % i, 0)
        while echo[1] != b"%d" % i:
            await echo[0].wait()
            echo[0].clear()
        echo_us.append(time.ticks_diff(time.ticks_us(), t0))
    emit(ev="rtt", puback_us=puback, echo_us=echo_us)


async def command(link, cmd):
    c = link.client
    op = cmd["cmd"]
    if op == "pub":
        pid = await link.publish(cmd["topic"], cmd["payload"].encode(), cmd.get("qos", 0),
                                 cmd.get("retain", False))
        emit(ev="pub", pid=pid)
    elif op == "sub":
        await link.subscribe(cmd["topic"], cmd.get("qos", 0))
        emit(ev="sub")
    elif op == "acked":
        while c.inflight:
            await c.wait_acked(c.inflight[0])
        emit(ev="acked")
    elif op == "stats":
        emit(ev="stats", pings=c.pings, pongs=c.pongs, inflight=c.inflight, dropped=c.dropped,
             attempts=link.attempts, connects=link.connects, up=link.is_up)
    elif op == "rtt":
        await rtt(link, cmd.get("n", 20))
    elif op == "quit":
        await link.stop()
        emit(ev="bye")
        return False
    return True


async def main(cfg):
    if cfg.get("mode") == "once":
        await once(cfg)
        return
    b = cfg.get("backoff", {})
    policy = Backoff(b.get("base_ms", 100), b.get("cap_ms", 400), b.get("initial_window_ms", 0),
                     b.get("stable_ms", 5000), XorShift32(b.get("seed", 1)))
    link = mqttlink.Link(make_client(cfg), policy)
    asyncio.create_task(watch(link))
    asyncio.create_task(inbox(link))
    link.start()
    stdin = asyncio.StreamReader(sys.stdin)
    while True:
        line = await stdin.readline()
        if not line:
            break
        cmd = json.loads(line)
        try:
            if not await command(link, cmd):
                break
        except (OSError, mqtt.MQTTError, ValueError, asyncio.TimeoutError) as e:
            emit(ev="error", cmd=cmd["cmd"], type=type(e).__name__, msg=str(e))


asyncio.run(main(json.loads(read(sys.argv[1]))))
