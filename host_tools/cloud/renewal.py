"""Device certificate renewal, the service's side (`iotctl monitor --renew-certs`).

A device asks once 80 % of its certificate's lifetime has passed (firmware/certrenew.py):
the event {"type": "cert_renew", "cert": base64 DER} on dev/<id>/events. The broker's ACL
lets only the client whose certificate CN is <id> publish there, over mutual TLS: the
session proves that the device holds the key. The service then checks the certificate
itself (issued by the manufacturer CA, CN = <id>, 80 % of its lifetime passed) and issues a
new one for the same public key, name, SAN and key usages, with the same lifetime (never
past the CA's), answering with the command {"cmd": "cert", "cert": base64 DER} on
dev/<id>/cmd. The monitor then needs the manufacturer CA's private key: run it where that
key may live, or give it an issuing CA of its own."""

import base64
import binascii
import datetime
import time

from cryptography import x509

from .. import ca as ca_mod

RENEW_PERCENT = 80
MIN_INTERVAL_S = 30  # one certificate per device per this many seconds at most


class Renewer:
    """Answers renewal requests; `issued` counts certificates issued per device."""

    def __init__(self, keys_dir, log=None):
        self.ca = ca_mod.load(keys_dir)
        self.log = log or (lambda msg: None)
        self._last = {}
        self.issued = {}

    def handle(self, device_id, event, now=None):
        """The command for `device_id`'s request, or None (refused: the reason is logged)."""
        now = time.time() if now is None else now
        try:
            der = base64.b64decode(event.get("cert") or "", validate=True)
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, binascii.Error, TypeError) as e:
            return self._refuse(device_id, f"not a certificate ({e})")
        if not ca_mod.verify_device(self.ca.cert, cert):
            return self._refuse(device_id, "not issued by the manufacturer CA")
        cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        if not cn or cn[0].value != device_id:
            return self._refuse(device_id, "the certificate names another device")
        nb, na = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
        if now < nb + (na - nb) * RENEW_PERCENT / 100:
            return self._refuse(device_id, "not due: less than 80 % of its lifetime passed")
        if now - self._last.get(device_id, -MIN_INTERVAL_S) < MIN_INTERVAL_S:
            return self._refuse(device_id, "renewed moments ago")
        try:
            hosts = [str(n.value) for n in cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value]
        except x509.ExtensionNotFound:
            hosts = []
        try:
            ekus = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            ekus = [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        # The same lifetime, starting a little before now (a tenth of it, at most the
        # factory's hour) for clocks slightly behind: due again at about 70 % from now.
        life = na - nb
        skew = min(ca_mod.BACKDATE.total_seconds(), life / 10)
        start = datetime.datetime.fromtimestamp(int(now - skew), datetime.UTC)
        not_after = min(start + datetime.timedelta(seconds=life),
                        self.ca.cert.not_valid_after_utc)
        new = ca_mod.issue_leaf(self.ca, device_id, cert.public_key(), ekus, hosts,
                                not_after, start + ca_mod.BACKDATE)
        self._last[device_id] = now
        self.issued[device_id] = self.issued.get(device_id, 0) + 1
        self.log(f"renewal: {device_id}: new certificate until {not_after:%Y-%m-%d %H:%M:%S}Z")
        from cryptography.hazmat.primitives.serialization import Encoding

        return {"cmd": "cert", "id": f"cert-{int(now)}",
                "cert": base64.b64encode(new.public_bytes(Encoding.DER)).decode()}

    def _refuse(self, device_id, why):
        self.log(f"renewal: {device_id}: refused: {why}")
        return None
