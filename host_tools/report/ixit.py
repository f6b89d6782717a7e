"""The IXIT (implementation extra information for testing, ETSI TS 103 701) that this project can
fill from what it knows: authentication mechanisms, update mechanisms, security parameters,
secure boot, resilience mechanisms and deletion functions. Every value is read from code or
configuration (host_tools/report/codefacts.py) and names its source; nothing is typed here but the
wording around the values. Each IXIT lists the EN 303 645 V3.1.3 test groups it serves."""

import math

from . import codefacts as cf

# IXIT number and name (TS 103 701) -> the V3.1.3 provisions whose test groups use it.
IXITS = {
    "1-AuthMech": ("Authentication mechanisms", ["5.1-1", "5.1-2", "5.1-3", "5.1-4", "5.1-5",
                                                  "5.5-5"]),
    "7-UpdMech": ("Update mechanisms", ["5.3-1", "5.3-2", "5.3-3", "5.3-7", "5.3-10",
                                        "5.3-12", "5.7-1"]),
    "10-SecParam": ("Security parameters", ["5.4-1", "5.4-3", "5.4-4", "5.5-8"]),
    "20-SecBoot": ("Secure boot mechanisms", ["5.7-1", "5.7-2"]),
    "23-ResMech": ("Resilience mechanisms", ["5.9-1", "5.9-2", "5.9-3"]),
    "25-DelFunc": ("Deletion functions", ["5.11-1", "5.11-2", "5.11-3", "5.11-4"]),
}


def _e(name, description, facts):
    """An IXIT entry: its name, a description, and [(label, Fact)]."""
    return {"id": name, "description": description,
            "values": [{"item": label, "value": f.value, "source": f.source}
                       for label, f in facts]}


def _auth():
    p = cf.constants("host_tools/provision.py")
    c = cf.constants("firmware/credentials.py")
    t = cf.constants("firmware/throttle.py")
    a = cf.constants("firmware/auth.py")
    bits = p["PASSWORD_GROUPS"].value * p["GROUP_LEN"].value \
        * math.log2(len(p["PASSWORD_ALPHABET"].value))
    src = f"{p['PASSWORD_GROUPS'].source}, {p['GROUP_LEN'].source}, {p['PASSWORD_ALPHABET'].source}"
    login = [f"{m} {path}" for m, path, _ in cf.routes() if path.endswith("login")]
    login += [f"{m} {path}" for m, path, *_ in cf.const("firmware/pages.py", "ROUTES").value
              if path == "/login"]
    return [
        _e("AuthMech-Owner-Password",
           "The owner logs in with the device's own password (printed on its label) or a "
           "password they chose; a session cookie then authenticates each request.",
           [("login interfaces", cf.Fact(login, "firmware/api.py, firmware/pages.py routes")),
            ("generated password", cf.Fact(f"{p['PASSWORD_GROUPS'].value}x"
                                           f"{p['GROUP_LEN'].value} symbols of a "
                                           f"{len(p['PASSWORD_ALPHABET'].value)}-symbol "
                                           f"alphabet, {bits:.1f} bits, per device", src)),
            ("password record", p["ALG"]), ("PBKDF2 iterations", c["DEFAULT_ITERATIONS"]),
            ("salt bytes", p["SALT_BYTES"]),
            ("owner password length, minimum", c["MIN_LEN"]),
            ("owner password length, maximum", c["MAX_LEN"]),
            ("delay after each failure, per address (s)", t["DELAYS"]),
            ("per-address lock-out after failures", t["LOCKOUT_AFTER"]),
            ("per-address lock-out (s)", t["LOCKOUT_S"]),
            ("failures an hour, all addresses together, at most", t["HOURLY_CEILING"]),
            ("consecutive failures before password logins lock (NIST SP 800-63B)",
             t["MAX_CONSECUTIVE"]),
            ("presence window after a button press (s)", t["PRESENCE_S"]),
            ("password checks per address in that window", t["PRESENCE_TRIES"]),
            ("session idle expiry (s)", a["SESSION_S"]), ("sessions at most", a["MAX_SESSIONS"])]),
        _e("AuthMech-Update-Signature",
           "Machine-to-machine: the device accepts an update only when signed by an update "
           "key that a pinned root key certified.",
           [("algorithms", cf.const("host_tools/keys.py", "ALGS")),
            ("update-key certificate validity (days)",
             cf.const("host_tools/keys.py", "DEFAULT_VALIDITY_DAYS"))]),
    ]


def _update():
    b = cf.constants("bootloader/bundle.py")
    caps = {name: cf.board(name).value.get("slot_capacity") for name in cf.boards()}
    push = [f"{m} {path}" for m, path, _ in cf.routes() if path.startswith("/api/update")]
    return [_e("UpdMech-App-Bundle",
               "Signed A/B app bundles, pushed over TLS or pulled from the maker's server, "
               "verified before a byte is written and at every boot; a trial boot confirms "
               "or rolls back.",
               [("interfaces", cf.Fact(push, "firmware/api.py, firmware/cloud.py routes")),
                ("signature algorithms", cf.const("host_tools/keys.py", "ALGS")),
                ("manifest keys", b["MANIFEST_KEYS"]), ("optional keys", b["OPTIONAL_KEYS"]),
                ("manifest bytes at most", b["MAX_MANIFEST"]),
                ("files at most", b["MAX_FILES"]),
                ("trial boots before rollback", cf.const("bootloader/slotstate.py", "TRIALS")),
                ("slot capacity per board (bytes)", cf.Fact(caps, "boards/*/board.json"))])]


def _params():
    p = cf.constants("host_tools/provision.py")
    return [_e("SecParam-Factory",
               "Per-device security parameters written at provisioning into the factory "
               "partition (never in the software): trust anchors, the password record, the "
               "device's TLS key and certificate, the manufacturer CA certificate, identity.",
               [("files", p["FACTORY_FILES"]), ("partition", p["PARTITION"])]),
            _e("SecParam-Signing",
               "Root and update signing keys stay with the maker (iotctl keys); private keys "
               "are written mode 0600 and are never in a bundle.",
               [("key metadata file", cf.const("host_tools/keys.py", "INFO")),
                ("manufacturer CA key", cf.const("host_tools/ca.py", "CA_KEY"))])]


def _secboot():
    out = []
    for name in cf.boards():
        cfg = cf.board(name)
        if "secure_boot" not in cfg.value:
            continue
        sb, fe = cfg.value["secure_boot"], cfg.value.get("flash_encryption", {})
        out.append(_e(f"SecBoot-{name}",
                      "ROM-verified Secure Boot v2 of the bootloader and the MicroPython image; "
                      "the frozen boot stage verifies the app slot before importing it.",
                      [("secure boot", cf.Fact(sb, cfg.source)),
                       ("flash encryption", cf.Fact(fe, cfg.source)),
                       ("ROM download mode", cf.Fact(cfg.value.get("rom_download"),
                                                     cfg.source))]))
    out.append(_e("SecBoot-App-Slot",
                  "Every boot: the boot stage checks the slot's signed prefix and each file's "
                  "SHA-256 before import; no verified slot: alert-only mode.",
                  [("hash buffer (bytes)", cf.const("bootloader/bootstage.py", "BUF_SIZE")),
                   ("alert LED pattern", cf.const("bootloader/alertmode.py", "PATTERN"))]))
    return out


def _resilience():
    h = {**cf.constants("firmware/httpd.py"), **cf.constants("firmware/httpreq.py")}
    k = cf.constants("firmware/backoff.py")
    return [_e("ResMech-Local-Server",
               "The local HTTPS server bounds what a client controls; the thermostat's control "
               "loop never waits on the network.",
               [("request head bytes at most", h["MAX_HEAD"]), ("headers at most",
                                                               h["MAX_HEADERS"]),
                ("connections at most", h["MAX_CONNS"]),
                ("accept to first request byte, TLS handshake included (ms)",
                 h["FIRST_BYTE_MS"]),
                ("accept to end of request head (ms)", h["HEAD_MS"]),
                ("body read time-out (ms)", h["READ_TIMEOUT_MS"]),
                ("response send time-out (ms)", h["SEND_MS"])]),
            _e("ResMech-Reconnect",
               "Reconnection to the maker's service after an outage: jittered exponential "
               "back-off, spread over an initial window, so a fleet does not return at once.",
               [("base (ms)", k["BASE_MS"]), ("cap (ms)", k["CAP_MS"]),
                ("initial window (ms)", k["INITIAL_WINDOW_MS"])])]


def _deletion():
    r = cf.constants("firmware/factoryreset.py")
    pages = cf.const("firmware/pages.py", "ROUTES")
    found = [f"{m} {path}" for m, path, *_ in pages.value if path in ("/delete", "/reset")]
    return [_e("DelFunc-Owner-Pages",
               "Delete my data (personal data erased, freed flash overwritten) and factory "
               "reset (owner, settings and all personal data removed) from the owner pages.",
               [("pages", cf.Fact(found, f"{pages.source}, its /delete and /reset")),
                ("typed confirmation", r["CONFIRM"]),
                ("kept history entries at most", cf.const("firmware/privacy.py",
                                                          "MAX_HISTORY"))]),
            _e("DelFunc-Button", "Factory reset by holding the button.",
               [("hold (ms)", r["HOLD_MS"])])]


_BUILDERS = {"1-AuthMech": _auth, "7-UpdMech": _update, "10-SecParam": _params,
             "20-SecBoot": _secboot, "23-ResMech": _resilience, "25-DelFunc": _deletion}


def build(report=None, v3_rows=None):
    """The IXIT as a dict; with a conformance report and ICS rows (ics.rows), each IXIT lists
    the tests that cover its test groups and their outcomes in that run."""
    out = []
    for key, (title, groups) in IXITS.items():
        tests = {}
        for row in v3_rows or ():
            if row["ref"] in groups:
                for ev in row["evidence"]:
                    tests.setdefault(ev["test"], ev["outcome"])
        out.append({"ixit": key, "title": title, "test_groups": groups,
                    "entries": _BUILDERS[key](),
                    "tests": [{"test": t, "outcome": o} for t, o in sorted(tests.items())]})
    return out


def render_md(ixits, header=""):
    lines = ["# IXIT: implementation extra information for testing (ETSI TS 103 701)", "",
             header, "Every value is read from the code or configuration named beside it.", ""]
    for x in ixits:
        lines += [f"## IXIT {x['ixit']}: {x['title']}", "",
                  f"Test groups (EN 303 645 V3.1.3): {', '.join(x['test_groups'])}", ""]
        for e in x["entries"]:
            lines += [f"### {e['id']}", "", e["description"], "",
                      "| Item | Value | Read from |", "|---|---|---|"]
            lines += [f"| {v['item']} | `{v['value']}` | {v['source']} |" for v in e["values"]]
            lines.append("")
        if x["tests"]:
            lines += ["Tests covering these test groups in this run:", ""]
            lines += [f"- {t['outcome']}: `{t['test']}`" for t in x["tests"]]
            lines.append("")
    return "\n".join(lines)
