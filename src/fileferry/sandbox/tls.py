"""A throw-away PKI for the FTPS stand-ins and tests: CA, server certificates, keys (PEM).

``make_test_pki(directory)`` writes, all with unencrypted EC P-256 keys:

* ``ca.pem``: a self-signed CA, valid for 2 days; clients trust this file;
* ``server.pem`` / ``server.key``: signed by the CA, SAN ``IP:127.0.0.1``,
  ``DNS:localhost`` (and ``hostname`` if it is neither);
* ``untrusted.pem`` / ``untrusted.key``: a self-signed certificate for the same names
  that no CA vouches for (the "untrusted certificate" test);
* ``wrong-name.pem`` / ``wrong-name.key``: signed by the CA, but its only SAN is
  ``DNS:wrong.example`` (the "name mismatch" test).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TestPki", "make_test_pki"]

VALIDITY = datetime.timedelta(days=2)
BACKDATE = datetime.timedelta(minutes=5)  # tolerate a little clock skew


@dataclass(frozen=True)
class TestPki:
    """Paths of the generated PEM files, and the server certificate's SHA-256 fingerprint."""

    __test__ = False  # not a pytest test class, despite the name

    ca_file: Path
    cert_file: Path
    key_file: Path
    untrusted_cert_file: Path
    untrusted_key_file: Path
    wrong_name_cert_file: Path
    wrong_name_key_file: Path
    fingerprint: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FileFerry test PKI"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             now: datetime.datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf(common_name: str, names: list[str], key: ec.EllipticCurvePrivateKey,
          issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
          now: datetime.datetime) -> x509.Certificate:
    builder = (
        _builder(_name(common_name), issuer, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def make_test_pki(directory: Path, hostname: str = "127.0.0.1") -> TestPki:
    """Generate a fresh CA and certificates in ``directory`` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    ca_key = _key()
    ca_name = _name("FileFerry throw-away test CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    names = ["127.0.0.1", "localhost"]
    if hostname not in names:
        names.append(hostname)
    server_key = _key()
    server_cert = _leaf(hostname, names, server_key, ca_name, ca_key, now)

    untrusted_key = _key()
    untrusted_name = _name(hostname)  # self-signed: issuer == subject, not the CA
    untrusted_cert = (
        _builder(untrusted_name, untrusted_name, untrusted_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(names), critical=False)
        .sign(untrusted_key, hashes.SHA256())
    )

    wrong_key = _key()
    wrong_cert = _leaf("wrong.example", ["wrong.example"], wrong_key, ca_name, ca_key, now)

    pki = TestPki(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
        untrusted_cert_file=directory / "untrusted.pem",
        untrusted_key_file=directory / "untrusted.key",
        wrong_name_cert_file=directory / "wrong-name.pem",
        wrong_name_key_file=directory / "wrong-name.key",
        fingerprint=server_cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    )
    _write_cert(pki.ca_file, ca_cert)
    _write_cert(pki.cert_file, server_cert)
    _write_key(pki.key_file, server_key)
    _write_cert(pki.untrusted_cert_file, untrusted_cert)
    _write_key(pki.untrusted_key_file, untrusted_key)
    _write_cert(pki.wrong_name_cert_file, wrong_cert)
    _write_key(pki.wrong_name_key_file, wrong_key)
    return pki
