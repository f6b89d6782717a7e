"""Match a CycloneDX SBOM against an offline advisory feed: OSV JSON records (one record, a
list, a {"vulns": [...]} batch answer, or a folder of .json files) or CSAF 2.0 security
advisories. A component is affected when an advisory names it (package name, purl, or the
Git repository its purl points at) and its version lies in an affected range (SEMVER or
ECOSYSTEM events: introduced, fixed, last_affected, limit) or in the listed versions.
GIT ranges (commits) cannot be decided from a version and are reported as not checked.
"""

import json
import re
from pathlib import Path

from ..errors import IotctlError, UsageError

_NUM = re.compile(r"^v?(\d+(?:\.\d+)*)(?:[-+~.]?(.*))?$")
_VERS_OP = re.compile(r"^(>=|<=|!=|<|>|=)?(.+)$")


class Affected(IotctlError):
    """The SBOM names a component that a feed's advisory affects."""

    exit_code = 13
    kind = "advisory"

    def __init__(self, matches):
        ids = sorted({m["id"] for m in matches})
        super().__init__(f"{len(ids)} advisory(ies) affect this SBOM: " + "; ".join(
            f"{m['id']} ({m['component']} {m['version']})" for m in matches))
        self.matches = matches


def version_key(v):
    """A sort key for dotted versions: 1.9 < 1.10; a pre-release (1.29.0-preview) sorts
    before its release; a leading "v" is ignored. None if `v` is not a dotted version."""
    m = _NUM.match(str(v).strip())
    if not m:
        return None
    nums = tuple(int(x) for x in m.group(1).split("."))
    nums = nums + (0,) * (6 - len(nums)) if len(nums) < 6 else nums
    pre = m.group(2) or ""
    return nums, (0, pre) if pre else (1, "")


def _in_events(version, events):
    """OSV's rule: sorted events; introduced opens, fixed/limit close before, last_affected
    closes after."""
    key = version_key(version)
    if key is None:
        return False
    inside = False
    points = []
    for ev in events:
        (kind, at), = ev.items() if isinstance(ev, dict) and len(ev) == 1 else (("bad", ""),)
        if kind not in ("introduced", "fixed", "last_affected", "limit"):
            raise UsageError(f"unknown OSV range event {ev!r}")
        k = ((0,) * 6, (0, "")) if at == "0" else version_key(at)  # "0": from the start
        if k is None:
            raise UsageError(f"OSV range event {ev!r} is not a version")
        points.append((k, kind))
    points.sort(key=lambda p: (p[0], p[1] != "introduced"))
    for k, kind in points:
        if kind == "introduced" and key >= k:
            inside = True
        elif kind in ("fixed", "limit") and key >= k:
            inside = False
        elif kind == "last_affected" and key > k:
            inside = False
    return inside


def _purl_base(purl):
    if not isinstance(purl, str) or not purl.startswith("pkg:"):
        return None
    return purl.split("@")[0].split("?")[0].lower()


def _repo_purl(url):
    m = re.match(r"^https?://github\.com/([^/]+)/([^/.]+)", str(url or ""))
    return f"pkg:github/{m.group(1)}/{m.group(2)}".lower() if m else None


# --- feeds -----------------------------------------------------------------------------------

def _osv(rec, source):
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
        raise UsageError(f"{source}: an OSV record needs an id")
    affected = []
    for a in rec.get("affected", []):
        pkg = a.get("package") or {}
        names = {str(pkg["name"]).lower()} if pkg.get("name") else set()
        purls = {p for p in (_purl_base(pkg.get("purl")), _repo_purl(pkg.get("name"))) if p}
        ranges, git = [], False
        for r in a.get("ranges", []):
            if r.get("type") in ("SEMVER", "ECOSYSTEM"):
                ranges.append(r.get("events", []))
            elif r.get("type") == "GIT":
                git = True
                if r.get("repo"):
                    purls.add(_repo_purl(r["repo"]))
            else:
                raise UsageError(f"{source}: {rec['id']}: unknown range type {r.get('type')!r}")
        purls.discard(None)
        affected.append({"names": names, "purls": purls, "ranges": ranges,
                         "versions": [str(v) for v in a.get("versions", [])], "git": git})
    return {"id": rec["id"], "aliases": rec.get("aliases", []),
            "summary": rec.get("summary") or (rec.get("details") or "")[:200],
            "source": source, "affected": affected}


def _vers(spec):
    """A vers range (vers:generic/>=1.0|<1.28) as OSV-like event lists."""
    body = spec.split("/", 1)[1] if spec.startswith("vers:") and "/" in spec else None
    if body is None:
        raise UsageError(f"product_version_range {spec!r} is not a vers: range")
    lo, hi, exact = None, None, []
    for c in body.split("|"):
        op, v = _VERS_OP.match(c.strip()).groups()
        if op in (None, "="):
            exact.append(v)
        elif op in (">=", ">"):
            lo = {"introduced": v}
        elif op == "<":
            hi = {"fixed": v}
        elif op == "<=":
            hi = {"last_affected": v}
    ranges = [[lo or {"introduced": "0"}] + ([hi] if hi else [])] if (lo or hi) else []
    return ranges, exact


def _csaf(doc, source):
    products = {}

    def walk(branches, name, version):
        for b in branches:
            n, v = name, version
            if b.get("category") == "product_name":
                n = b.get("name")
            elif b.get("category") in ("product_version", "product_version_range"):
                v = (b["category"], b.get("name"))
            p = b.get("product")
            if p:
                helper = p.get("product_identification_helper", {})
                products[p.get("product_id")] = (n, v, _purl_base(helper.get("purl")))
            walk(b.get("branches", []), n, v)
    walk(doc.get("product_tree", {}).get("branches", []), None, None)
    out = []
    for i, vuln in enumerate(doc.get("vulnerabilities", [])):
        affected = []
        status = vuln.get("product_status", {})
        for pid in status.get("known_affected", []) + status.get("first_affected", []):
            if pid not in products:
                continue
            name, ver, purl = products[pid]
            ranges, versions = [], []
            if ver and ver[0] == "product_version":
                versions = [ver[1]]
            elif ver:
                ranges, versions = _vers(ver[1])
            affected.append({"names": {name.lower()} if name else set(),
                             "purls": {purl} if purl else set(), "ranges": ranges,
                             "versions": versions, "git": False})
        vid = vuln.get("cve") or f"{doc['document']['tracking']['id']}#{i}"
        out.append({"id": vid, "aliases": [doc["document"]["tracking"]["id"]],
                    "summary": vuln.get("title") or doc["document"].get("title", ""),
                    "source": source, "affected": affected})
    return out


def _records(doc, source):
    if isinstance(doc, dict) and isinstance(doc.get("document"), dict) \
            and doc["document"].get("csaf_version"):
        return _csaf(doc, source)
    if isinstance(doc, dict) and "vulns" in doc:
        doc = doc["vulns"]
    elif isinstance(doc, dict) and "results" in doc:
        doc = [v for r in doc["results"] for v in r.get("vulns", [])]
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise UsageError(f"{source}: not an OSV record, list, batch answer or CSAF document")
    return [_osv(r, source) for r in doc]


def load_feed(path):
    """Every advisory in a feed file or folder (its *.json files, sorted)."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not path.exists():
        raise UsageError(f"advisory feed {path} does not exist")
    out = []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, UnicodeError, ValueError) as e:
            raise UsageError(f"advisory feed {f} is not JSON: {e}") from None
        out += _records(doc, str(f))
    return out


# --- matching --------------------------------------------------------------------------------

def sbom_components(sbom):
    """[(bom-ref, name, version, purl base)] of an SBOM's subject and components."""
    if not isinstance(sbom, dict) or sbom.get("bomFormat") != "CycloneDX":
        raise UsageError("not a CycloneDX SBOM (bomFormat)")
    comps = list(sbom.get("components", []))
    subject = sbom.get("metadata", {}).get("component")
    if subject:
        comps.insert(0, subject)
    return [(c.get("bom-ref"), c.get("name", ""), c.get("version"), _purl_base(c.get("purl")))
            for c in comps if c.get("type") != "file"]


def match(sbom, advisories):
    """(matches, unchecked): each match names the advisory and the component; `unchecked`
    lists (advisory, component) pairs that name the component only by a GIT range."""
    matches, unchecked = [], []
    for ref, name, version, purl in sbom_components(sbom):
        for adv in advisories:
            for a in adv["affected"]:
                if name.lower() not in a["names"] and (purl is None or purl not in a["purls"]):
                    continue
                vk = version_key(version) if version else None
                hit = version is not None and (
                    any(vk is not None and vk == version_key(v) for v in a["versions"])
                    or any(_in_events(version, ev) for ev in a["ranges"]))
                if hit:
                    matches.append({"id": adv["id"], "aliases": adv["aliases"],
                                    "summary": adv["summary"], "component": name,
                                    "version": version, "bom_ref": ref,
                                    "source": adv["source"]})
                    break
                if a["git"] and not a["ranges"] and not a["versions"]:
                    unchecked.append({"id": adv["id"], "component": name, "version": version})
    return matches, unchecked


def check(sbom_path, feed_path):
    """Match an SBOM file against a feed; returns the result, raises Affected on a match."""
    try:
        sbom = json.loads(Path(sbom_path).read_text())
    except FileNotFoundError:
        raise UsageError(f"SBOM {sbom_path} does not exist") from None
    except (OSError, UnicodeError, ValueError) as e:
        raise UsageError(f"SBOM {sbom_path} is not JSON: {e}") from None
    advisories = load_feed(feed_path)
    matches, unchecked = match(sbom, advisories)
    result = {"sbom": str(sbom_path), "feed": str(feed_path), "advisories": len(advisories),
              "components": len(sbom_components(sbom)), "matches": matches,
              "unchecked": unchecked}
    if matches:
        err = Affected(matches)
        err.result = result
        raise err
    return result
