"""The RS256 signing key: created once, kept under the state dir, identified by its thumbprint.

The key id (`kid`) is the RFC 7638 JWK thumbprint of the public key, so a new key always has a new
kid: Dovecot caches public keys per `<azp>.<alg>.<kid>` for the life of its auth process, and a kid
that kept its name across a key change would go on validating against the stale cached key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ALGORITHM = "RS256"
_KEY_FILE = "signing-key.pem"


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private: rsa.RSAPrivateKey
    kid: str
    public_pem: str

    def jwk(self) -> dict[str, Any]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


def thumbprint(public: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 over the required JWK members in lexicographic order, no whitespace."""
    numbers = public.public_numbers()
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_or_create(state_dir: Path) -> SigningKey:
    """The persistent signing key: tokens issued before a server restart stay valid after it."""
    path = state_dir / _KEY_FILE
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise RuntimeError(f"{path} is not an RSA private key")
        private = loaded
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, path)
    public = private.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return SigningKey(private=private, kid=thumbprint(public), public_pem=public_pem)
