"""Test PKI for mutual TLS: a CA, a broker (server) certificate and device (client) certificates.

Everything is generated with `cryptography` into a directory, in PEM (for mosquitto and
paho-mqtt) and DER (for the device, whose mbedTLS build only takes DER). Keys are EC P-256,
the curve the device's TLS stack and the manufacturer CA use. Nothing here is committed:
each test builds its own PKI in its tmp_path.
"""

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Manufacturer"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    """Write a private key in PEM and DER, mode 0600 from creation on."""
    for suffix, enc, fmt in ((".pem", serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL),
                             (".der", serialization.Encoding.DER,
                              serialization.PrivateFormat.TraditionalOpenSSL)):
        data = key.private_bytes(enc, fmt, serialization.NoEncryption())
        fd = os.open(str(path) + suffix, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def _write_cert(path, cert):
    Path(str(path) + ".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(str(path) + ".der").write_bytes(cert.public_bytes(serialization.Encoding.DER))


class Pki:
    """A CA in `directory` that issues server and client certificates.

    Paths follow one pattern: `<name>.crt.pem|.crt.der` and `<name>.key.pem|.key.der`.
    """

    def __init__(self, directory, name="ca"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        now = datetime.datetime.now(datetime.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = _name("%s root" % name)
        self._subject = subject
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + 3650 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
        _write_cert(self.dir / ("%s.crt" % name), self._cert)

    def cert_path(self, name, fmt="pem"):
        return self.dir / ("%s.crt.%s" % (name, fmt))

    def key_path(self, name, fmt="pem"):
        return self.dir / ("%s.key.%s" % (name, fmt))

    @property
    def ca_pem(self):
        return self.cert_path(self.name, "pem")

    @property
    def ca_der(self):
        return self.cert_path(self.name, "der")

    def _paths(self, name):
        return {"cert_pem": self.cert_path(name, "pem"), "cert_der": self.cert_path(name, "der"),
                "key_pem": self.key_path(name, "pem"), "key_der": self.key_path(name, "der"),
                "name": name}

    def get(self, name, server=False):
        """The certificate `name` if it was issued already, else a new one."""
        if self.cert_path(name, "der").exists():
            return self._paths(name)
        return self.issue(name, server=server)

    def issue(self, name, server=False, hosts=("localhost", "127.0.0.1"), expired=False):
        """Issue a certificate `name` (CN = name); a server one carries `hosts` as SANs.
        `expired`: valid for a year that ended yesterday."""
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            now -= 366 * _DAY
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + 365 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                  else ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
        )
        if server:
            sans = []
            for h in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    sans.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        _write_cert(self.dir / ("%s.crt" % name), cert)
        _write_key(self.dir / ("%s.key" % name), key)
        return self._paths(name)
