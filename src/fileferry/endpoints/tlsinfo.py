"""Say what a TLS server presented when its certificate was refused.

The transfer has already been refused when this runs. It opens one more
connection only to read the certificate, so that the message can name it;
no credentials or data are ever sent over that connection.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from fileferry.config import DestinationSettings

__all__ = ["describe_certificate", "describe_presented_certificate"]


def _inspection_context() -> ssl.SSLContext:
    # Verification is off here on purpose: this connection only reads the
    # certificate that was just refused, to show it to the user.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _fetch_der(host: str, port: int, explicit: bool, timeout: float) -> bytes | None:
    with socket.create_connection((host, port), timeout) as raw:
        if explicit:
            with raw.makefile("rb") as reader:
                reader.readline()
                raw.sendall(b"AUTH TLS\r\n")
                if not reader.readline().startswith(b"234"):
                    return None
        with _inspection_context().wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)


def describe_certificate(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)

    def cn(name: x509.Name) -> str:
        found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(found[0].value) if found else name.rfc4514_string() or "(empty)"

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
        names += [f"IP:{n}" for n in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    pretty = ":".join(fingerprint[i:i + 2] for i in range(0, len(fingerprint), 2))
    return (f"CN={cn(cert.subject)}, names {', '.join(names) or '(none)'}, issued by "
            f"CN={cn(cert.issuer)}, valid until {cert.not_valid_after_utc:%Y-%m-%d}, "
            f"SHA-256 {pretty}")


def describe_presented_certificate(settings: DestinationSettings,
                                   error: ssl.SSLCertVerificationError) -> str:
    url = settings.parsed
    port = urlsplit(settings.url).port or (990 if settings.implicit else url.port)
    reason = error.verify_message or error.reason or str(error)
    try:
        der = _fetch_der(url.host, port, not settings.implicit, settings.connect_timeout)
        shown = describe_certificate(der) if der else "(could not read it)"
    except (OSError, ssl.SSLError, ValueError):
        shown = "(could not read it)"
    hint = ("the certificate names another host: use the name it was issued for in the URL"
            if "mismatch" in reason.lower() else
            "if the partner uses a private CA or a self-signed certificate, confirm its "
            "fingerprint with them and set ca_file to it")
    return (f"the TLS certificate of {url.host}:{port} was refused ({reason}); the server "
            f"presented {shown}; {hint}")
