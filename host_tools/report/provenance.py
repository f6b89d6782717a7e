"""What a conformance report's evidence belongs to, and which claims rest on unset facts.

The report names the source commit (and whether the tree had uncommitted changes), the
bundle the run is about (its version, SHA-256 and the SBOM hash its signed manifest binds),
and downgrades a claim "Y" to "N" when a fact the provision publishes (listed in the map as
`facts`, dotted keys of conformance/product.toml) is still a placeholder.
"""

import hashlib
import subprocess
from pathlib import Path

from ..bundle import parse
from ..errors import UsageError, VerifyError
from ..mpy import REPO


def git_commit(repo=REPO):
    """{"commit", "dirty"} of the checkout, or {"commit": None, ...} outside git."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=20)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def bundle_facts(path):
    """{"path", "product", "version", "security_version", "sha256", "sbom_sha256"} of a
    signed bundle (structure only: `iotctl inspect --keys` gives the device's verdict)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"bundle {p}: {e.strerror or e}") from None
    try:
        m = parse(data).manifest
    except VerifyError as e:
        raise UsageError(f"{p} is not a signed bundle: {e}") from None
    if not isinstance(m, dict) or "version" not in m:
        raise UsageError(f"{p}: the manifest is not readable")
    return {"path": str(p), "product": m.get("product"), "version": m["version"],
            "security_version": m.get("security_version"),
            "sha256": hashlib.sha256(data).hexdigest(), "sbom_sha256": m.get("sbom_sha256")}


def provenance(bundle=None, repo=REPO, run=None):
    """{"commit", "dirty", "commit_from", "checkout_commit", "bundle"}: the commit the run
    recorded (`run`: Run.meta) or else the checkout's; checkout_commit names the checkout's
    when it differs from the run's."""
    here = git_commit(repo)
    out = {**here, "commit_from": "checkout" if here["commit"] else None,
           "checkout_commit": None}
    if run and run.get("commit"):
        out.update(commit=run["commit"], dirty=run.get("dirty"), commit_from="test run")
        if here["commit"] and here["commit"] != run["commit"]:
            out["checkout_commit"] = here["commit"]
    out["bundle"] = bundle_facts(bundle) if bundle else None
    return out


def apply_unset_facts(rows, pmap, unset):
    """Each row gets `facts_unset` (its provision's facts that are placeholders); a claim Y
    that the run proved but whose published facts are placeholders becomes N."""
    facts = {p["ref"]: p.get("facts", []) for p in pmap["provision"]}
    unset = set(unset)
    for row in rows:
        row["facts_unset"] = [f for f in facts.get(row["ref"], []) if f in unset]
        if row["facts_unset"] and row["verdict"] == "Y":
            row["verdict"] = "N"
    return rows


def check_facts(doc, product_keys):
    """Problems with the map's `facts` (each a dotted key that product.toml has)."""
    out = []
    for p in doc.get("provision", []):
        f = p.get("facts", [])
        if not isinstance(f, list) or not all(isinstance(x, str) for x in f):
            out.append(f"{p.get('ref')}: facts must be a list of product.toml keys")
        elif product_keys is not None:
            out += [f"{p.get('ref')}: fact {x} is not a key of product.toml" for x in f
                    if x not in product_keys]
    return out


def product_keys(product):
    keys = set()

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        else:
            keys.add(prefix)
    walk("", product)
    return keys
