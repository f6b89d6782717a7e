"""What the label and the factory record say about the set-up access point (ETSI 4.12-1):
its SSID (named after the device id), its WPA2 passphrase (derived from the device secret
exactly as firmware/sealed.py derives it on the device), and the standard Wi-Fi QR code a
phone joins by scanning."""

import hashlib
import hmac

SECRET_BYTES = 32
SSID_PREFIX = "setup-"
_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"  # as firmware/sealed.py: 5 bits a symbol


def ap_ssid(device_id):
    """The set-up access point's SSID: the device id, so the label names the network."""
    return SSID_PREFIX + device_id


def ap_passphrase(secret, n=16):
    """The WPA2 passphrase of the set-up AP: 16 symbols (80 bits) from the device secret."""
    d = hmac.new(secret, b"iot-secure-firmware/setup-ap", hashlib.sha256).digest()
    acc = int.from_bytes(d, "big")
    out = []
    for _ in range(n):
        out.append(_ALPHABET[acc & 31])
        acc >>= 5
    return "".join(out)


def _esc(text):
    # The WIFI: URI scheme escapes \ ; , : and " with a backslash.
    return "".join("\\" + c if c in '\\;,:"' else c for c in text)


def wifi_qr(ssid, passphrase):
    """The text of the Wi-Fi QR code: WIFI:T:WPA;S:<ssid>;P:<passphrase>;;"""
    return f"WIFI:T:WPA;S:{_esc(ssid)};P:{_esc(passphrase)};;"


def parse_wifi_qr(text):
    """{"T", "S", "P"} from a WIFI: QR text (what a phone does when it scans the label)."""
    if not text.startswith("WIFI:") or not text.endswith(";;"):
        raise ValueError(f"not a Wi-Fi QR code: {text!r}")
    fields, cur, key, i, body = {}, "", None, 0, text[5:-1]
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            cur += body[i + 1]
            i += 2
            continue
        if c == ":" and key is None:
            key, cur = cur, ""
        elif c == ";":
            fields[key] = cur
            key, cur = None, ""
        else:
            cur += c
        i += 1
    return fields
