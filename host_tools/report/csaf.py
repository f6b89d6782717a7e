"""CSAF 2.0 security advisories: the checks a published advisory must pass (the schema's required
structure and enums, and the csaf_security_advisory profile). conformance/templates/
csaf-advisory-template.json is checked with it when `iotctl docs` renders it."""

import datetime
import re


def _text(v):
    return isinstance(v, str) and v.strip() != ""


_CSAF_ENUMS = {
    "publisher": ("coordinator", "discoverer", "other", "translator", "user", "vendor"),
    "status": ("draft", "final", "interim"),
    "note": ("description", "details", "faq", "general", "legal_disclaimer", "other",
             "summary"),
    "reference": ("external", "self"),
    "remediation": ("mitigation", "no_fix_planned", "none_available", "vendor_fix",
                    "workaround"),
    "branch": ("architecture", "host_name", "language", "legacy", "patch_level",
               "product_family", "product_name", "product_version", "product_version_range",
               "service_pack", "specification", "vendor"),
    "tlp": ("AMBER", "GREEN", "RED", "WHITE"),
}


def _is_time(v):
    try:
        datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
        return "T" in v
    except (AttributeError, ValueError):
        return False


def check_csaf(doc):
    """Problems with `doc` as a CSAF 2.0 security advisory: the schema's required structure
    and enums, and the profile's rules (section 4.4 and tests 6.1.1, 6.1.2, 6.1.27.4-6)."""
    out = []
    d = doc.get("document") if isinstance(doc, dict) else None
    if not isinstance(d, dict):
        return ["/document is required"]
    for k in ("category", "csaf_version", "publisher", "title", "tracking"):
        if k not in d:
            out.append(f"/document/{k} is required")
    if d.get("csaf_version") != "2.0":
        out.append("/document/csaf_version must be 2.0")
    if d.get("category") != "csaf_security_advisory":
        out.append("/document/category must be csaf_security_advisory")
    pub = d.get("publisher", {})
    if pub.get("category") not in _CSAF_ENUMS["publisher"] or not _text(pub.get("name")) \
            or not str(pub.get("namespace", "")).startswith(("https://", "http://")):
        out.append("/document/publisher needs category, name and a namespace URI")
    tr = d.get("tracking", {})
    for k in ("current_release_date", "id", "initial_release_date", "revision_history",
              "status", "version"):
        if k not in tr:
            out.append(f"/document/tracking/{k} is required")
    if tr.get("status") not in _CSAF_ENUMS["status"]:
        out.append("/document/tracking/status must be draft, final or interim")
    if not re.fullmatch(r"(0|[1-9][0-9]*)|(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)\S*",
                        str(tr.get("version", ""))):
        out.append("/document/tracking/version must be an integer or semantic version")
    for k in ("current_release_date", "initial_release_date"):
        if k in tr and not _is_time(tr[k]):
            out.append(f"/document/tracking/{k} must be a date-time")
    revs = tr.get("revision_history", [])
    if not revs or not all(isinstance(x, dict) and _is_time(x.get("date", "")) and
                           _text(x.get("number")) and _text(x.get("summary")) for x in revs):
        out.append("/document/tracking/revision_history needs items with date, number, summary")
    tlp = d.get("distribution", {}).get("tlp")
    if tlp is not None and tlp.get("label") not in _CSAF_ENUMS["tlp"]:
        out.append("/document/distribution/tlp/label must be a TLP 1.0 label")
    for n in d.get("notes", []):
        if n.get("category") not in _CSAF_ENUMS["note"] or not _text(n.get("text")):
            out.append("/document/notes items need a known category and text")
    for ref in d.get("references", []):
        if ref.get("category", "external") not in _CSAF_ENUMS["reference"] \
                or not _text(ref.get("summary")) or not _text(ref.get("url")):
            out.append("/document/references items need summary and url")
    # the product tree: every product_id defined once (6.1.2)
    defined = []

    def branches(items, path):
        for b in items:
            if b.get("category") not in _CSAF_ENUMS["branch"] or not _text(b.get("name")):
                out.append(f"{path}: a branch needs a known category and a name")
            if "product" in b:
                p = b["product"]
                if not _text(p.get("name")) or not _text(p.get("product_id")):
                    out.append(f"{path}: a product needs name and product_id")
                defined.append(p.get("product_id"))
            branches(b.get("branches", []), path + "/branches")
    tree = doc.get("product_tree")
    if not isinstance(tree, dict):
        out.append("/product_tree is required for a security advisory (6.1.27.4)")
    else:
        branches(tree.get("branches", []), "/product_tree/branches")
        defined += [p.get("product_id") for p in tree.get("full_product_names", [])]
    if len(set(defined)) != len(defined):
        out.append("a product_id is defined twice (6.1.2)")
    vulns = doc.get("vulnerabilities")
    if not isinstance(vulns, list) or not vulns:
        out.append("/vulnerabilities is required for a security advisory")
    for i, v in enumerate(vulns or []):
        at = f"/vulnerabilities/{i}"
        if not v.get("notes"):
            out.append(f"{at}/notes is required (6.1.27.5)")
        status = v.get("product_status")
        if not isinstance(status, dict) or not status:
            out.append(f"{at}/product_status is required (6.1.27.6)")
        used = [pid for ids in (status or {}).values() for pid in ids]
        for r in v.get("remediations", []):
            if r.get("category") not in _CSAF_ENUMS["remediation"] or not _text(r.get("details")):
                out.append(f"{at}/remediations items need a known category and details")
            used += r.get("product_ids", [])
        if "cve" in v and not re.fullmatch(r"CVE-\d{4}-\d{4,}", str(v["cve"])):
            out.append(f"{at}/cve must look like CVE-YYYY-NNNN")
        for pid in used:
            if pid not in defined:
                out.append(f"{at}: product_id {pid} is not defined in /product_tree (6.1.1)")
    return out
