"""Certificates and keys of the local control plane (one throwaway CA per cluster).

The API server serves TLS with a certificate for 127.0.0.1/localhost signed by the cluster CA and trusts
client certificates signed by the same CA. Identities follow the Kubernetes conventions so RBAC's
bootstrap roles apply: the admin is `O=system:masters`, the scheduler `CN=system:kube-scheduler`, the
controller manager `CN=system:kube-controller-manager`. A separate RSA key signs service-account tokens.
Keys are ECDSA P-256 (fast to generate) except the service-account key (RSA, which every client accepts).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
"""Lifetime of every certificate; a dev cluster lives for hours, a year avoids surprises on long runs."""


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


class Pki:
    """Creates the CA once in `directory` and issues certificates from it."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = CertFiles(self.dir / "ca.crt", self.dir / "ca.key")
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("hexrl-dev-ca"))
            .issuer_name(_name("hexrl-dev-ca"))
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca.cert.write_bytes(self._ca_cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self._ca_key, self.ca.key)

    def issue(
        self, stem: str, cn: str, org: str | None = None, server: bool = False,
        extra_ips: tuple[str, ...] = (), extra_names: tuple[str, ...] = (),
    ) -> CertFiles:
        """A certificate for `cn` (client, or server for 127.0.0.1/localhost/kubernetes when `server`, plus
        `extra_ips`/`extra_names`, e.g. the machine's address when real nodes reach the API server)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if server:
            names: list[x509.GeneralName] = [
                x509.DNSName(n)
                for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                          "kubernetes.default.svc.cluster.local", *extra_names)
            ]  # fmt: skip
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.96.0.1", *extra_ips)]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        files = CertFiles(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, files.key)
        return files

    def service_account_key(self) -> CertFiles:
        """RSA key pair that signs and verifies service-account tokens (`cert` holds the public key)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files = CertFiles(self.dir / "sa.pub", self.dir / "sa.key")
        _write_key(key, files.key)
        files.cert.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return files
