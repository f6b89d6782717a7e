"""The manufacturer CA: an EC P-256 self-signed root that issues one X.509 certificate per
device (the identity for the local TLS API and for mutual TLS to the cloud)."""

import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import KeyFileError, UsageError

CA_KEY = "ca.key"  # PEM, PKCS#8, mode 0600
CA_CERT = "ca.crt"  # PEM
DEFAULT_NAME = "IoT Thermostat Manufacturer CA"
DEFAULT_ORG = "Example Devices Ltd"
CA_VALIDITY_DAYS = 30 * 365  # outlives every device it issues for
BACKDATE = datetime.timedelta(hours=1)  # tolerate a station clock slightly behind


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_der(self):
        return self.cert.public_bytes(serialization.Encoding.DER)


def _now():
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _write_new(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def init(directory, name=DEFAULT_NAME, org=DEFAULT_ORG, validity_days=CA_VALIDITY_DAYS):
    """Create the CA key (0600) and its self-signed certificate in `directory`, beside the
    signing keys. Refuses to overwrite either. Returns a summary dict."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for f in (CA_KEY, CA_CERT):
        if (d / f).exists():
            raise KeyFileError(f"{d / f} already exists; refusing to overwrite the CA")
    if validity_days < 365:
        raise UsageError("a manufacturer CA must be valid for at least a year")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    _write_new(d / CA_KEY, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), 0o600)
    _write_new(d / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return describe(cert, d)


def describe(cert, directory=None):
    info = {"subject": cert.subject.rfc4514_string(), "serial": format(cert.serial_number, "x"),
            "not_after": int(cert.not_valid_after_utc.timestamp()),
            "sha256": fingerprint(cert)}
    if directory is not None:
        info["dir"] = str(directory)
    return info


def load(directory):
    """The CA in `directory` (KeyFileError if missing or inconsistent)."""
    d = Path(directory)
    try:
        key_pem = (d / CA_KEY).read_bytes()
        cert_pem = (d / CA_CERT).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"{d} holds no manufacturer CA (run `iotctl ca init --dir {d}`)") from None
    except OSError as e:
        raise KeyFileError(f"cannot read the CA in {d}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"the CA in {d} is unreadable: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or \
            key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise KeyFileError(f"{d / CA_KEY} does not belong to {d / CA_CERT}")
    return CA(key, cert)


def fingerprint(cert):
    """SHA-256 of the certificate's DER encoding, lower-case hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def san(hosts):
    """SubjectAlternativeName entries: an IP address as such, anything else as a DNS name."""
    out = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def issue_leaf(ca, cn, public_key, ekus, hosts, not_after, now):
    """An end-entity certificate from the manufacturer CA: the CA's organisation and CN `cn`,
    digital signature only, extended key usages `ekus`, SAN `hosts` (if any)."""
    org = ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org[0].value)] if org else []
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name(names))
               .issuer_name(ca.cert.subject)
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                   ca_ski), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                              critical=False))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(san(hosts)), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def issue_device(ca, device_id, public_key, now=None):
    """The device certificate: subject CN = device id, SAN dNSName <id> and <id>.local,
    EKU serverAuth + clientAuth (the same identity serves the local TLS API and mutual TLS
    to the cloud), valid until the CA expires (a device that never reaches the cloud has no
    renewal path; one on the cloud link renews it: host_tools/cloud/renewal.py)."""
    now = now or _now()
    not_after = ca.cert.not_valid_after_utc
    if now >= not_after:
        raise KeyFileError("the manufacturer CA has expired")
    return issue_leaf(ca, device_id, public_key, (ExtendedKeyUsageOID.SERVER_AUTH,
                                                 ExtendedKeyUsageOID.CLIENT_AUTH),
                      (device_id, device_id + ".local"), not_after, now)


def verify_device(ca_cert, cert):
    """True if `cert` was issued by `ca_cert` (signature and issuer name)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False
