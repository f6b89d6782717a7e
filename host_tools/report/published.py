"""The documents a maker publishes (conformance/templates/): SECURITY.md, the support period,
the privacy notice, the interface list and the CSAF advisory template, rendered from
conformance/product.toml and facts read from firmware/ and docs/."""

import ast
import datetime
import json
import string
from pathlib import Path

from ..mpy import REPO
from .conformance import CONFORMANCE, PRODUCT_PATH, ConformanceError, load_product
from .csaf import check_csaf
from .tablea1 import md_cell

TEMPLATES = CONFORMANCE / "templates"
FIRMWARE = REPO / "firmware"
DOCS = REPO / "docs"
DOCUMENTS = ("SECURITY.md", "support-period.md", "privacy-notice.md", "interfaces.md",
             "csaf-advisory-template.json")


def firmware_privacy(firmware=FIRMWARE):
    """INVENTORY, PURPOSES and THIRD_PARTIES from the firmware's notice.json, which the device's
    own pages show: the privacy notice says what the device itself says. The purposes must be
    exactly the ones firmware/privacy.py asks consent for (KEYS, read without importing it:
    it is MicroPython)."""
    path = Path(firmware) / "notice.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConformanceError(f"{path} is missing: the privacy notice is rendered from it") \
            from None
    except ValueError as e:
        raise ConformanceError(f"{path} is not JSON: {e}") from None
    try:
        found = {"INVENTORY": tuple(tuple(r) for r in doc["inventory"]),
                 "PURPOSES": tuple(tuple(p) for p in doc["purposes"]),
                 "THIRD_PARTIES": doc["third_parties"]}
    except (KeyError, TypeError):
        raise ConformanceError(f"{path} must hold inventory, purposes and third_parties") \
            from None
    if any(len(r) != 6 for r in found["INVENTORY"]) or any(len(p) != 3
                                                            for p in found["PURPOSES"]):
        raise ConformanceError(f"{path}: inventory rows have 6 fields, purposes 3")
    keys = None
    src = Path(firmware) / "privacy.py"
    for node in ast.parse(src.read_text(), str(src)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "KEYS":
            keys = ast.literal_eval(node.value)
    if keys is None or tuple(p[0] for p in found["PURPOSES"]) != tuple(keys):
        raise ConformanceError(f"{path}: the purposes must be {keys} of {src}, in that order")
    return found


def _table(headers, rows):
    line = "| " + " | ".join(headers) + " |"
    return "\n".join([line, "|" + "---|" * len(headers)] +
                     ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows])


def template_values(product, today=None):
    """Every ${name} a template may use: product.toml's keys, dotted, and what is computed."""
    values = {}

    def flat(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                flat(f"{prefix}.{k}" if prefix else k, x)
        else:
            values[prefix] = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    flat("", {k: v for k, v in product.items() if k != "placeholders"})
    today = today or datetime.date.today()
    end = datetime.date.fromisoformat(product["support"]["end_date"])
    values["support.end_date_long"] = f"{end.day} {end:%B %Y}"
    values["today"] = today.isoformat()
    values["generated_datetime"] = f"{today.isoformat()}T00:00:00.000Z"
    return values


def interface_list(docs_dir=DOCS):
    """docs/interfaces.md without its title: the interface list that the attack-surface test
    checks against a running device is the one that is published."""
    path = Path(docs_dir) / "interfaces.md"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConformanceError(f"{path} is missing: the published interface list is "
                               "rendered from it") from None
    return text.split("\n", 1)[1].strip() if text.startswith("# ") else text.strip()


def _privacy_values(values, product, firmware):
    """The privacy notice's tables, from firmware/privacy.py with {maker} and {service} set."""
    fill = {"{maker}": product["manufacturer"]["name"], "{service}": product["privacy"]["service"]}

    def sub(text):
        for k, v in fill.items():
            text = text.replace(k, v)
        return text
    priv = firmware_privacy(firmware)
    values["privacy.inventory"] = _table(
        ("Personal data", "Where it is kept", "Who uses it", "Why", "How long",
         "What removes it"), [tuple(sub(c) for c in row) for row in priv["INVENTORY"]])
    values["privacy.purposes"] = "\n".join(
        f"- **{sub(title)}** (`{key}`): {sub(text)}" for key, title, text in priv["PURPOSES"])
    values["privacy.third_parties"] = sub(priv["THIRD_PARTIES"])


class _Template(string.Template):
    idpattern = r"(?a:[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)"


def render_docs(product, names=DOCUMENTS, firmware=FIRMWARE, docs_dir=None, today=None):
    """{name: text} of the published documents; the CSAF advisory template is checked."""
    unknown = [n for n in names if n not in DOCUMENTS]
    if unknown:
        raise ConformanceError(f"unknown document(s) {', '.join(unknown)}; known: "
                               f"{', '.join(DOCUMENTS)}")
    values = template_values(product, today)
    if "privacy-notice.md" in names:
        _privacy_values(values, product, firmware)
    if "interfaces.md" in names:
        values["interfaces.doc"] = interface_list(docs_dir or DOCS)
    out = {}
    for name in names:
        src = TEMPLATES / name
        try:
            tmpl = _Template(src.read_text())
        except FileNotFoundError:
            raise ConformanceError(f"template {src} does not exist") from None
        if name.endswith(".json"):
            vals = {k: json.dumps(v)[1:-1] for k, v in values.items()}
        else:
            vals = values
        try:
            text = tmpl.substitute(vals)
        except (KeyError, ValueError) as e:
            raise ConformanceError(f"template {src}: no value for {e}") from None
        if name.endswith(".json"):
            doc = json.loads(text)
            problems = check_csaf(doc)
            if problems:
                raise ConformanceError(f"{name} is not a CSAF 2.0 security advisory: "
                                       + "; ".join(problems))
            text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        out[name] = text
    return out


def write_docs(outdir, product_path=PRODUCT_PATH, names=DOCUMENTS, firmware=FIRMWARE):
    """Render the documents into `outdir`; returns the paths written."""
    outdir = Path(outdir)
    if outdir.resolve() == TEMPLATES.resolve():
        raise ConformanceError("refusing to write the documents over their templates")
    docs = render_docs(load_product(product_path), names, firmware)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in docs.items():
        (outdir / name).write_text(text)
        paths.append(outdir / name)
    return paths
