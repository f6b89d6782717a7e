"""The exact verdict a device would give on a bundle: runs the device's own installer under the
MicroPython unix port into a scratch folder (the same code as over-the-air updates)."""

import json
import tempfile
from pathlib import Path

from . import keys as keymod
from . import mpy
from .bundle import parse
from .errors import KeyFileError, ToolError, UsageError, VerifyError

SCRIPT = Path(__file__).parent / "devscripts" / "verify_bundle.py"


def device_verdict(bundle_path, keys_dir, board=None, product=None, sec_floor=0, key_floor=1,
                   now=0, capacity=None):
    """Return {"ok", "verdict", "text"} for the bundle under the given device rules. By default
    the rules are the bundle's own (its first board, its product), so only the signature chain,
    structure and hashes decide."""
    data = Path(bundle_path).read_bytes()
    try:
        parsed = parse(data)
        manifest = parsed.manifest
    except VerifyError:  # the device parser gives the precise verdict below
        manifest = {}
    boards = manifest.get("boards") if isinstance(manifest, dict) else None
    policy = {
        "kind": manifest.get("kind", "app") if isinstance(manifest, dict) else "app",
        "product": product or (manifest.get("product") if isinstance(manifest, dict) else "") or "",
        "board": board or (boards[0] if isinstance(boards, list) and boards else "unix"),
        "sec_floor": sec_floor, "key_floor": key_floor, "now": now,
        "capacity": capacity if capacity is not None else 1 << 30,
    }
    anchors = keymod.anchors(keys_dir, key_floor)
    with tempfile.TemporaryDirectory(prefix="iotctl-verify-") as tmp:
        tmp = Path(tmp)
        (tmp / "anchors.json").write_text(json.dumps(anchors))
        (tmp / "policy.json").write_text(json.dumps(policy))
        (tmp / "root").mkdir()
        proc = mpy.run(SCRIPT, [Path(bundle_path).resolve(), tmp / "anchors.json",
                                tmp / "policy.json", tmp / "root"], timeout=300)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise ToolError(f"device verifier failed (exit {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()[-600:]}") from None


def describe(bundle_path):
    """The bundle's parts for display (no verdict)."""
    p = Path(bundle_path)
    if not p.is_file():
        raise UsageError(f"{p} not found")
    parsed = parse(p.read_bytes())
    try:
        cert = keymod.parse_cert(parsed.cert)
        cert_info = {"serial": cert.serial, "key_alg": cert.key_alg, "root_alg": cert.root_alg,
                     "not_after": cert.not_after, "root_id": cert.root_id.hex()}
    except KeyFileError as e:  # shown to the user; the verdict comes from the device
        cert_info = {"error": str(e)}
    return {"size": parsed.total, "kind": ["app", "firmware"][parsed.kind] if parsed.kind < 2
            else parsed.kind, "payload_bytes": parsed.payload_len, "manifest": parsed.manifest,
            "certificate": cert_info}
