"""Secrets at rest (4.4-1), on the device runtime: records sealed with AES-256-CBC and
HMAC-SHA256 under the device's own key, refused when changed, moved or from another device;
and the set-up AP passphrase the device derives is the one the label prints."""

from host_tools import mpy, onboarding

SCRIPT = mpy.REPO / "tests" / "device" / "sealed_records.py"


def test_sealed_records_round_trip_and_refuse_tampering(tmp_path):
    proc = mpy.run(SCRIPT, [tmp_path], extra_path=[mpy.REPO / "firmware"])
    assert proc.returncode == 0 and "SEALED-OK" in proc.stdout, proc.stdout + proc.stderr
    ap = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("AP "))
    assert ap == onboarding.ap_passphrase(bytes(range(32)))
    assert len(ap) == 16 and ap != onboarding.ap_passphrase(bytes(range(1, 33)))


def test_wifi_qr_code_text():
    qr = onboarding.wifi_qr("setup-th-abc", 'p;a:s\\s"')
    assert qr == 'WIFI:T:WPA;S:setup-th-abc;P:p\\;a\\:s\\\\s\\";;'
    assert onboarding.parse_wifi_qr(qr) == {"T": "WPA", "S": "setup-th-abc", "P": 'p;a:s\\s"'}
