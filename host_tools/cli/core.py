"""CLI: keys, build, inspect, vectors (thin wrappers over keys/bundle/verify/vectors)."""

import json

import click

from .. import bundle, keys, verify
from ..errors import VerifyError
from ..flashimage import BOARDS


def _emit(obj, as_json, text):
    click.echo(json.dumps(obj, indent=2) if as_json else text)


@click.group("keys")
def keys_group():
    """Root and update signing keys."""


@keys_group.command("init")
@click.option("--dir", "directory", default="keys", show_default=True, type=click.Path(),
              help="the key folder to create (existing keys are never overwritten)")
@click.option("--alg", type=click.Choice(sorted(keys.ALGS)), default="ed25519", show_default=True,
              help="signature algorithm of the root and update keys")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def keys_init(directory, alg, as_json):
    """Create the root key, the first update key and its root-signed certificate."""
    serial = keys.init(directory, alg)
    info = keys.load_info(directory)
    _emit({"dir": directory, "alg": alg, "serial": serial, "root_public": info["root_public"]},
          as_json, f"keys created in {directory}: root ({alg}) and update key serial {serial}\n"
          f"keep {directory}/root.key offline; private keys are mode 0600")


@keys_group.command("rotate")
@click.option("--dir", "directory", default="keys", show_default=True,
              type=click.Path(exists=True, file_okay=False),
              help="the key folder made by `keys init` (it must hold the root key)")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def keys_rotate(directory, as_json):
    """Create the next update key (serial + 1), certified by the root key."""
    serial = keys.rotate(directory)
    _emit({"dir": directory, "serial": serial}, as_json,
          f"update key serial {serial} created; bundles are now signed with it. Devices stop "
          f"accepting older keys once they confirm a bundle signed with serial {serial}.")


@click.command("build")
@click.option("--keys", "keys_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="the key folder with the current update key")
@click.option("--board", "boards", required=True, multiple=True, type=click.Choice(BOARDS),
              help="a board the bundle is for; repeat for several boards")
@click.option("--version", "version", required=True, help="the app version, e.g. 1.2.0")
@click.option("--security-version", type=click.IntRange(min=0), required=True,
              help="anti-rollback floor: devices refuse bundles below the highest they ran")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="the bundle file to write")
@click.option("--source", type=click.Path(exists=True, file_okay=False),
              default=str(bundle.FIRMWARE_DIR), show_default=True,
              help="the application folder to package")
@click.option("--notes", default="", help="release notes shown to the owner")
@click.option("--security-fix", is_flag=True, help="mark the update as a security fix")
@click.option("--expires", type=int, default=None, help="Unix time after which devices refuse it")
@click.option("--sbom", "sbom_out", type=click.Path(dir_okay=False),
              help="write the bundle's CycloneDX SBOM here (its SHA-256 is signed in any case)")
@click.option("--layout", type=click.Choice(bundle.LAYOUTS), default="romfs", show_default=True,
              help="romfs: the app as one ROMFS image; dir: file by file, for devices whose "
                   "boot stage predates ROMFS slots")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def build_cmd(keys_dir, boards, version, security_version, output, source, notes, security_fix,
              expires, sbom_out, layout, as_json):
    """Build a signed app bundle from the application folder."""
    data = bundle.build(keys_dir, list(boards), version, security_version, out=output,
                        source=source, notes=notes, security_fix=security_fix, expires=expires,
                        sbom_out=sbom_out, layout=layout)
    info = verify.describe(output)
    files = len(info["manifest"]["files"])
    if layout == "romfs":  # the files inside the one image
        parsed = bundle.parse(data)
        files = len(bundle.romfs_paths(data[parsed.payload_offset:]))
    _emit({"output": output, "size": len(data), "files": files, "layout": layout,
           "version": version, "security_version": security_version}, as_json,
          f"{output}: {len(data)} bytes, {files} files ({layout}), "
          f"version {version}, security version {security_version}, "
          f"key serial {info['certificate'].get('serial')}")


@click.command("inspect")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--keys", "keys_dir", type=click.Path(exists=True, file_okay=False),
              help="verify against these trust anchors (without it nothing is verified)")
@click.option("--board", type=click.Choice(BOARDS),
              help="apply this board's rule instead of the bundle's first board (with --keys)")
@click.option("--security-floor", type=int, default=0, show_default=True,
              help="the device's security-version floor to judge against (with --keys)")
@click.option("--key-floor", type=int, default=1, show_default=True,
              help="the lowest update-key serial the device accepts (with --keys)")
@click.option("--json", "as_json", is_flag=True, help="print the manifest and verdict as JSON")
def inspect_cmd(bundle_file, keys_dir, board, security_floor, key_floor, as_json):
    """Show a bundle's manifest; with --keys, the exact verdict a device would give.

    Without --keys this is a dump: the manifest is shown, marked unverified, exit 0."""
    info = verify.describe(bundle_file)
    if keys_dir:
        info["verdict"] = verify.device_verdict(bundle_file, keys_dir, board=board,
                                                sec_floor=security_floor, key_floor=key_floor)
    else:
        info["verdict"] = {"ok": None, "verdict": "UNVERIFIED",
                           "text": "no --keys given: the manifest is shown as found, its "
                           "signature was not checked"}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        m = info["manifest"]
        click.echo(f"bundle    {bundle_file} ({info['size']} bytes, {info['kind']})")
        for k in ("product", "version", "security_version", "boards", "security_fix", "notes",
                  "sbom_sha256"):
            click.echo(f"{k:<17} {m.get(k)}")
        click.echo(f"{'key serial':<17} {info['certificate'].get('serial')}")
        for f in m.get("files", []):
            click.echo(f"  {f.get('size', 0):>9}  {f.get('sha256', '')[:16]}  {f.get('path')}")
        v = info["verdict"]
        click.echo(f"verdict: {v['verdict']} - {v['text']}")
    v = info["verdict"]
    if keys_dir and not v["ok"]:
        raise VerifyError(v["verdict"], v["text"])


@click.command("vectors")
@click.option("--alg", type=click.Choice(["ed25519", "ecdsa-p256"]), required=True,
              help="the verifier to run the vectors through")
@click.argument("vector_file", type=click.Path(exists=True, dir_okay=False))
def vectors_cmd(alg, vector_file):
    """Run the device verifier over a Wycheproof-layout JSON vector file."""
    from .. import vectors

    result = vectors.run_vectors(alg, vector_file)
    for failure in result.failures[:20]:
        click.echo(f"FAIL {failure}")
    click.echo(vectors.format_summary(result))
    if result.failed:
        raise VerifyError("VECTORS_FAILED", f"{result.failed} vector(s) judged wrongly")


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="demo-out", show_default=True,
              help="the folder for the demo's keys, bundles, device and labels (replaced)")
def demo_cmd(out):
    """Tell the end-to-end story on a simulated board (what `make demo` runs)."""
    from .. import demo

    demo.run(out)


COMMANDS = [keys_group, build_cmd, inspect_cmd, vectors_cmd, demo_cmd]
