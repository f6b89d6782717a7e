"""Build and read signed update bundles (IOTB, docs/FORMAT.md)."""

import hashlib
import json
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from . import keys as keymod
from . import mpy
from .errors import UsageError, VerifyError
from .mpy import REPO

HEADER_LEN = 64
MAX_MANIFEST = 8192
MAX_CERT = 160
SIG_LEN = 64
KINDS = {"app": 0, "firmware": 1}
_SEG = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,31}$")
_VERSION = re.compile(r"^(\d{1,5})\.(\d{1,5})\.(\d{1,5})$")
_SKIP_DIRS = {"__pycache__"}
FIRMWARE_DIR = REPO / "firmware"


def collect_app(source=FIRMWARE_DIR):
    """The files of the application: everything under `source` (no caches, no dotfiles);
    its `manifest.json` names the product."""
    source = Path(source)
    if not source.is_dir():
        raise UsageError(f"application folder {source} does not exist")
    meta = _app_meta(source)
    files = {}
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_dir() or any(p.startswith(".") or p in _SKIP_DIRS for p in rel.parts):
            continue
        if path.suffix == ".pyc" or rel.as_posix() == "manifest.json":
            continue
        files[rel.as_posix()] = path.read_bytes()
    return meta, files


def _app_meta(source):
    try:
        return json.loads((source / "manifest.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"{source}/manifest.json is missing (it names the product)") from None
    except ValueError as e:
        raise UsageError(f"{source}/manifest.json is not JSON: {e}") from None


def compile_files(files, boards):
    """Replace every .py with its .mpy (mpy-cross, the boards' native arch): smaller bundles,
    no compiler run and far less RAM on the device at import."""
    archs = {mpy.board_arch(b) for b in boards}
    if len(archs) > 1:
        raise UsageError(f"boards {', '.join(boards)} need different native code; build one "
                         "bundle per architecture")
    arch = archs.pop()
    out = {}
    for path, data in files.items():
        if path.endswith(".py"):
            out[path[:-3] + ".mpy"] = mpy.compile_source(data, path, arch)
        else:
            out[path] = data
    return out


ROMFS_IMAGE = "app.romfs"  # the one file of a ROMFS app bundle (bootloader/romslots.py)
LAYOUTS = ("romfs", "dir")


def romfs_image(files):
    """The app's files ({path: bytes}, already compiled) as one ROMFS image, made by
    MicroPython's own builder (mpremote.romfs, what `mpremote romfs build` runs)."""
    import contextlib
    import io
    import tempfile

    from mpremote.romfs import make_romfs

    for path in files:  # checked before anything is written under the build folder
        if len(path) > 96 or not all(_SEG.match(seg) for seg in path.split("/")):
            raise UsageError(f"file path {path!r} is not allowed in a bundle")
    with tempfile.TemporaryDirectory(prefix="iotctl-romfs-") as tmp:
        for path, data in files.items():
            dest = Path(tmp, path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the tree it builds
            return bytes(make_romfs(tmp, mpy_cross=False))


def _uint(data, pos):
    v = 0
    while True:
        b = data[pos]
        pos += 1
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            return v, pos


def romfs_paths(image):
    """The file paths in a ROMFS image (for display and tests; the device mounts it with
    vfs.VfsRom). Raises VerifyError if it is not a ROMFS image."""
    return list(romfs_files(image))


def romfs_files(image, _pos=None, _end=None, _prefix=""):
    """{path: bytes} of the files in a ROMFS image as mpremote's builder writes them (data
    verbatim in each file record). Raises VerifyError if it is not such an image."""
    if _pos is None:
        if image[:3] != b"\xd2\xcd\x31":
            raise VerifyError("BAD_IMAGE", "not a ROMFS image")
        try:
            n, pos = _uint(image, 3)
        except IndexError:
            raise VerifyError("BAD_IMAGE", "ROMFS image ends inside its header") from None
        if pos + n > len(image):
            raise VerifyError("BAD_IMAGE", "ROMFS image is shorter than its header says")
        return romfs_files(image, pos, pos + n)
    out, pos = {}, _pos
    try:
        while pos < _end:
            kind, pos = _uint(image, pos)
            n, pos = _uint(image, pos)
            body, pos = pos, pos + n
            if pos > _end:
                raise IndexError
            if kind in (4, 5):  # directory, file: name first
                k, q = _uint(image, body)
                name = image[q:q + k].decode()
                if kind == 4:
                    out.update(romfs_files(image, q + k, pos, _prefix + name + "/"))
                    continue
                data, q = b"", q + k
                while q < pos:  # the file's own records: its data
                    sub, q = _uint(image, q)
                    m, q = _uint(image, q)
                    if q + m > pos:
                        raise IndexError
                    if sub == 2:
                        data += bytes(image[q:q + m])
                    elif sub == 3:
                        raise VerifyError("BAD_IMAGE", f"{_prefix + name}: data kept elsewhere "
                                          "in the image (not what the builder writes)")
                    q += m
                out[_prefix + name] = data
    except (IndexError, UnicodeError):
        raise VerifyError("BAD_IMAGE", "ROMFS image ends inside a record") from None
    return out


def check_version(version):
    m = _VERSION.match(version or "")
    if not m or any(int(x) > 65535 for x in m.groups()):
        raise UsageError(f"version {version!r} must be MAJOR.MINOR.PATCH (each 0..65535)")


def make_manifest(kind, product, boards, version, security_version, files, notes="",
                  security_fix=False, created=None, expires=None):
    check_version(version)
    if not 0 <= security_version <= 0x7FFFFFFF:
        raise UsageError("security version must be 0 .. 2**31-1")
    if len(notes) > 1024:
        raise UsageError("release notes are limited to 1024 characters")
    if not 0 < len(files) <= 64:
        raise UsageError("a bundle holds 1 to 64 files")
    entries = []
    for path, data in files.items():
        if len(path) > 96 or not all(_SEG.match(seg) for seg in path.split("/")):
            raise UsageError(f"file path {path!r} is not allowed in a bundle")
        entries.append({"path": path, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    return {"schema": 1, "kind": kind, "product": product, "boards": list(boards),
            "version": version, "security_version": security_version,
            "created": int(time.time()) if created is None else created, "expires": expires,
            "files": entries, "notes": notes, "security_fix": bool(security_fix)}


def assemble(manifest, files, key, cert):
    """Header, manifest, certificate, signature over the header, payload in manifest order."""
    raw = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > MAX_MANIFEST:
        raise UsageError(f"manifest is {len(raw)} bytes; the limit is {MAX_MANIFEST}")
    payload_len = sum(e["size"] for e in manifest["files"])
    alg = keymod.ALGS[keymod.alg_of(key)]
    header = b"IOTB" + struct.pack("<BBBBIHHI", 1, KINDS[manifest["kind"]], alg, 0, len(raw),
                                   len(cert), SIG_LEN, payload_len)
    header += bytes(12) + hashlib.sha256(raw).digest()
    sig = keymod.sign(key, header)
    return b"".join([header, raw, cert, sig] + [files[e["path"]] for e in manifest["files"]])


def bind_sbom(manifest, files):
    """Make the bundle's CycloneDX SBOM and bind its SHA-256 into `manifest` (signed with
    it); returns the SBOM's bytes."""
    from .report import sbom

    data = sbom.for_bundle(manifest, files)
    manifest["sbom_sha256"] = sbom.digest(data)
    return data


def build(keys_dir, boards, version, security_version, out=None, source=FIRMWARE_DIR,
          notes="", security_fix=False, expires=None, files=None, product=None, kind="app",
          serial=None, compile=True, sbom_out=None, layout="romfs"):
    """Build a signed app bundle; returns its bytes (and writes `out` when given, its SBOM
    to `sbom_out`). Python sources are shipped precompiled unless `compile` is False. An app
    is one ROMFS image (`layout` "romfs", the default: docs/FORMAT.md) or, for devices that
    still boot directory slots' boot stage, its files one by one ("dir")."""
    if files is None:
        meta, files = collect_app(source)
        product = product or meta["product"]
    if not product:
        raise UsageError("a product name is required")
    key, cert, _serial = keymod.current_update_key(keys_dir, serial)
    if isinstance(boards, str):
        boards = [boards]
    if compile:
        files = compile_files(files, boards)
    if layout not in LAYOUTS:
        raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}")
    if kind == "app" and layout == "romfs":
        files = {ROMFS_IMAGE: romfs_image(files)}
    manifest = make_manifest(kind, product, boards, version, security_version, files, notes,
                             security_fix, expires=expires)
    sbom_data = bind_sbom(manifest, files)
    data = assemble(manifest, files, key, cert)
    if out:
        Path(out).write_bytes(data)
    if sbom_out:
        Path(sbom_out).write_bytes(sbom_data)
    return data


@dataclass
class Parsed:
    kind: int
    alg: int
    manifest: dict
    manifest_raw: bytes
    cert: bytes
    signature: bytes
    header: bytes
    payload_offset: int
    payload_len: int
    total: int


def parse(data):
    """Split a bundle into its parts for display; structural errors raise VerifyError."""
    if len(data) < HEADER_LEN:
        raise VerifyError("TRUNCATED", "shorter than the 64-byte header")
    if data[:4] != b"IOTB":
        raise VerifyError("BAD_MAGIC", "not an update bundle")
    _fmt, kind, alg, _r, mlen, clen, slen, plen = struct.unpack_from("<BBBBIHHI", data, 4)
    off = HEADER_LEN
    if not (1 <= mlen <= MAX_MANIFEST and 0 < clen <= MAX_CERT and slen == SIG_LEN):
        raise VerifyError("BAD_LENGTH", "a length field is out of bounds")
    if len(data) < off + mlen + clen + slen:
        raise VerifyError("TRUNCATED", "bundle ends inside its signed prefix")
    mraw = data[off:off + mlen]
    try:
        manifest = json.loads(mraw)
    except ValueError:
        manifest = {}
    cert = data[off + mlen:off + mlen + clen]
    sig = data[off + mlen + clen:off + mlen + clen + slen]
    poff = off + mlen + clen + slen
    return Parsed(kind, alg, manifest, mraw, cert, sig, data[:HEADER_LEN], poff, plen, len(data))
