"""`make demo` / `iotctl demo`: the end-to-end story on a simulated board, told step by step."""

import json
import os
import shlex
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, DownloadColumn, Progress

from . import bundle, ca, flashimage, keys, push, sim, verify
from .errors import VerifyError

console = Console(highlight=False)


def step(title):
    console.rule(f"[bold cyan]{title}")


def show(st):
    mode = st["mode"]
    colour = "green" if mode == "normal" else "red"
    console.print(f"  device: [bold]{st['state']}[/], mode [{colour}]{mode}[/], slot "
                  f"[bold]{st['slot']}[/], version [bold]{st['version']}[/]"
                  + (" [yellow](trial)[/]" if st.get("trial") else ""))
    if st.get("last"):
        console.print(f"  last event: {st['last']}")
    for r in st.get("reasons") or []:
        console.print(f"  [red]refused[/]: {r}")


def show_thermostat(dev):
    st = dev.status()
    t = st["thermostat"]
    console.print(f"  thermostat: {t['temperature']:.2f} C, target {t['target']} C, heater "
                  f"{'ON' if t['heating'] else 'off'}, {t['ticks']} control ticks "
                  f"(every {t['tick_ms']} ms); running {st['version']} from slot {st['slot']}")
    return st


def wait(d, pred, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = sim.status(d)
        if pred(st):
            return st
        time.sleep(0.05)
    raise VerifyError("DEMO", "device did not reach the expected state:\n" + sim.log_tail(d))


def push_with_bar(dev, path):
    from .cli.device import AverageSpeed

    size = Path(path).stat().st_size
    with Progress("  [progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  AverageSpeed(), console=console) as bar:
        task = bar.add_task(f"pushing {Path(path).name}", total=size)
        return push.push(dev, path, progress=lambda n: bar.update(task, completed=n))


def paths(out):
    """Where the demo keeps everything, under `out` (a path as given: `demo-out` from the
    repository root, so the printed commands run from there)."""
    out = Path(out)
    return {"out": out, "keys": out / "keys", "device": out / "device", "labels": out / "labels",
            "v1": out / "app-1.0.0.bin", "v2": out / "app-1.1.0.bin",
            "bad": out / "app-1.2.0-broken.bin", "src_v2": out / "src-1.1.0",
            "src_bad": out / "src-1.2.0-broken", "stranger_keys": out / "stranger",
            "stranger": out / "stranger.bin", "flipped": out / "flipped.bin"}


def commands(out, address="HOST:PORT", device_id="DEVICE_ID"):
    """The iotctl command lines that do what each step does, as printed: step -> [argv]."""
    p = {k: str(v) for k, v in paths(out).items()}
    ca_crt = f"{p['keys']}/ca.crt"
    device = ["--device", address, "--ca", ca_crt, "--name", device_id]

    def build(keys_dir, version, sv, output, *extra):
        return ["build", "--keys", keys_dir, "--board", "unix", "--version", version,
                "--security-version", str(sv), *extra, "-o", output]

    return {
        1: [["keys", "init", "--dir", p["keys"]], ["ca", "init", "--dir", p["keys"]]],
        2: [build(p["keys"], "1.0.0", 1, p["v1"], "--notes", "First release."),
            ["inspect", p["v1"], "--keys", p["keys"]]],
        3: [["sim", "create", p["device"], "--keys", p["keys"], "--bundle", p["v1"],
             "--labels", p["labels"]], ["sim", "start", p["device"]], ["status", *device]],
        4: [build(p["keys"], "1.1.0", 1, p["v2"], "--source", p["src_v2"], "--notes",
                  "Smoother heating schedule."), ["push", p["v2"], *device]],
        5: [["sim", "stop", p["device"]], ["sim", "start", p["device"]]],
        6: [["sim", "stop", p["device"]], ["sim", "start", p["device"]]],
        7: [["sim", "install", p["device"], p["v2"]], ["sim", "status", p["device"]]],
        8: [build(p["keys"], "1.2.0", 1, p["bad"], "--source", p["src_bad"]),
            ["push", p["bad"], *device]],
        9: [["keys", "init", "--dir", p["stranger_keys"]],
            build(p["stranger_keys"], "6.6.6", 9, p["stranger"]),
            ["push", p["stranger"], *device], ["push", p["flipped"], *device]],
    }


def show_commands(cmds):
    for argv in cmds:
        console.print(f"  $ {shlex.join(['iotctl', *argv])}", markup=False)


def app_source(dst, extra):
    """A copy of the application folder with `extra` files written over it (what
    `iotctl build --source` then packages)."""
    shutil.copytree(bundle.FIRMWARE_DIR, dst,
                    ignore=shutil.ignore_patterns("__pycache__", ".*", "*.pyc"))
    for rel, data in extra.items():
        path = Path(dst) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def run(out="demo-out"):
    """Tell the story in `out` (replaced). Each step prints the iotctl commands that do what
    it does; with `out` as given from the repository root, they can be copied and run."""
    p = paths(out)
    out = p["out"]
    if out.exists():
        if (out / "device").exists():
            sim.powercut(out / "device")
        shutil.rmtree(out)
    out.mkdir()
    kd, dev_dir = p["keys"], p["device"]
    console.print(Panel.fit("Secure IoT reference firmware: the story so far, on the simulated "
                            "board `unix`\n(real MicroPython unix port, NOR-flash image, littlefs, "
                            "real TLS)", style="bold"))
    cmds = commands(out)

    step("1. Keys: an offline root key certifies the update key; a manufacturer CA")
    keys.init(kd)
    ca.init(kd)
    cert = keys.parse_cert(keys.current_update_key(kd)[1])
    show_commands(cmds[1])
    console.print(f"  root key (ed25519), update key serial {cert.serial}, manufacturer CA "
                  "(EC P-256); private keys 0600")

    step("2. A signed app bundle, checked by the device's own verifier")
    v1, v2, bad = p["v1"], p["v2"], p["bad"]
    bundle.build(kd, ["unix"], "1.0.0", 1, out=v1, notes="First release.")
    verdict = verify.device_verdict(v1, kd)
    info = verify.describe(v1)
    show_commands(cmds[2])
    console.print(f"  {info['size']} bytes, {len(info['manifest']['files'])} files (precompiled "
                  f".mpy); iotctl inspect: [green]{verdict['verdict']}[/] ({verdict['text']})")

    step("3. Factory: provision a device (own id, password, key, certificate), flash v1.0.0")
    dev_info = sim.create(dev_dir, kd, v1, labels=p["labels"], speed=120)
    show(sim.start(dev_dir))
    sim.wait_api(dev_dir)
    address = sim.https_address(dev_dir)
    cmds = commands(out, address, dev_info["device_id"])
    show_commands(cmds[3])
    console.print(f"  device id [bold]{dev_info['device_id']}[/], password on the label only; "
                  f"label: {dev_info['labels'].get('png')}")
    console.print("  (commands that talk to the device ask for the label's password, or read "
                  "$IOTCTL_PASSWORD; here the room runs 120x real time)")
    dev = push.Device(address, dev_info["password"], ca=kd / "ca.crt",
                      name=dev_info["device_id"])
    console.print(f"  local API: https://{address} (certificate for {dev_info['device_id']}, "
                  "checked against the manufacturer CA)")
    port = address.rsplit(":", 1)[1]
    console.print(f"  set-up page: [bold]https://{dev_info['device_id']}:{port}/setup[/] (log in "
                  "with the label password; the name resolves to the device on its network)")
    status, sectxt = dev.fetch("/.well-known/security.txt")
    console.print(Panel(sectxt.decode().rstrip(), title="/.well-known/security.txt (RFC 9116)",
                        expand=False))
    for _ in range(3):
        time.sleep(1.0)
        show_thermostat(dev)

    step("4. A pushed update streams into slot B while the thermostat keeps running")
    app_source(p["src_v2"], {"assets/schedule-presets.bin": os.urandom(1 << 20)})  # 1 MiB
    bundle.build(kd, ["unix"], "1.1.0", 1, out=v2, source=p["src_v2"],
                 notes="Smoother heating schedule.")
    show_commands(cmds[4])
    result = push_with_bar(dev, v2)
    console.print(f"  [green]{result['result']}[/]: {result['from']} -> {result['version']} "
                  f"(slot {result['slot']}); release notes: \"{result['notes']}\"")
    console.print(f"  while 1 MiB streamed in, the longest gap between two control ticks was "
                  f"[bold]{result['control_max_gap_ms']} ms[/] (nominal {result['tick_ms']} ms);"
                  " then a restart into slot B, the self-test, and the confirmation")
    show_thermostat(dev)

    step("5. Tampering with slot B's code on flash: the boot stage refuses it, falls back")
    sim.stop(dev_dir)
    flashimage.tamper_slot(sim.image_path(dev_dir), result["version"], "thermostat.mpy")
    console.print("  (with the device off, one byte of thermostat.mpy in slot B's ROMFS image "
                  f"was changed on {sim.image_path(dev_dir)})")
    show_commands(cmds[5])
    show(sim.start(dev_dir))

    step("6. Both slots tampered with: alert-only mode")
    sim.stop(dev_dir)
    flashimage.tamper_slot(sim.image_path(dev_dir), result["from"], "app.mpy")
    console.print("  (with the device off, slot A's app.mpy was modified too)")
    show_commands(cmds[6])
    show(sim.start(dev_dir))
    hw = json.loads((dev_dir / "status.json").read_text())
    console.print(f"  LED pattern: [red]{hw['led']['pattern']}[/]; no network, no control, "
                  "no API")
    for line in sim.log_tail(dev_dir, 5).splitlines():
        if "ALERT-ONLY" in line:
            console.print(f"  log: [red]{line.strip()}[/]")

    step("7. Recovery: only a signed bundle is accepted (service port)")
    show_commands(cmds[7])
    sim.install(dev_dir, v2)
    show(wait(dev_dir, lambda s: s["mode"] == "normal" and s["trial"] is False))
    sim.wait_api(dev_dir)

    step("8. A broken release: its self-test fails, the device rolls back by itself")
    app_source(p["src_bad"], {"selftest.py": b"async def run(dev, *a):\n"
                                             b"    return 'sensor driver missing'\n"})
    bundle.build(kd, ["unix"], "1.2.0", 1, out=bad, source=p["src_bad"])
    show_commands(cmds[8])
    result = push_with_bar(dev, bad)
    reason = result["reason"].replace("rolled back: ", "")
    console.print(f"  [red]rolled back[/] to {result['version']}: {reason}")

    step("9. Refused before a byte is written: a stranger's key; refused at the end: "
         "a flipped byte")
    flipped = p["flipped"]
    data = bytearray(v2.read_bytes())
    data[-10] ^= 0x01
    flipped.write_bytes(bytes(data))
    keys.init(p["stranger_keys"])
    bundle.build(p["stranger_keys"], ["unix"], "6.6.6", 9, out=p["stranger"])
    show_commands(cmds[9])
    for label, path in (("stranger's key", p["stranger"]), ("flipped byte", flipped)):
        try:
            push.push(dev, path)
        except VerifyError as e:
            console.print(f"  {label}: [red]{e.verdict}[/] - {e.detail}")
    show_thermostat(dev)
    sim.stop(dev_dir)

    step("10. The cloud link: a broker outage, the thermostat keeps going, the outbox delivers")
    from .cloud import monitor

    monitor.outage_demo(out, kd, v1, console)
    console.print(Panel.fit(f"Done. Everything is in {out}/ (keys, bundles, label, the "
                            "device's flash image and log). To go on by hand: "
                            f"iotctl sim start {dev_dir}", style="green"))


if __name__ == "__main__":
    run()
