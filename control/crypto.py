"""Encryption of secrets at rest: AES-256-GCM under an operator-supplied key ring.

Keys come from `IDLEWIRE_CREDENTIAL_KEYS` (or the file named by `IDLEWIRE_CREDENTIAL_KEYS_FILE`):
comma-separated `key_id:base64(32 bytes)`, the first one is the primary (new writes), the others
still decrypt (rotation: add a new key in front, run `rotate`, then drop the old one).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyRingError(ValueError):
    """The key configuration is missing or malformed (never includes key material)."""


class DecryptError(ValueError):
    """A ciphertext did not authenticate: wrong key, wrong row, or tampered."""


@dataclasses.dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class KeyRing:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyRingError("no credential encryption key configured")
        for key_id, key in keys:
            if len(key) != 32:
                raise KeyRingError(f"key {key_id!r} must be 32 bytes (AES-256)")
        if len({k for k, _ in keys}) != len(keys):
            raise KeyRingError("duplicate key ids")
        self.primary_id = keys[0][0]
        self._aead = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        keys = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key_id, sep, b64 = part.partition(":")
            if not sep or not key_id:
                raise KeyRingError("each key must be written key_id:base64")
            try:
                keys.append((key_id, base64.b64decode(b64, validate=True)))
            except binascii.Error:
                raise KeyRingError(f"key {key_id!r} is not valid base64") from None
        return cls(keys)

    @classmethod
    def from_env(cls) -> KeyRing:
        spec = os.environ.get("IDLEWIRE_CREDENTIAL_KEYS")
        path = os.environ.get("IDLEWIRE_CREDENTIAL_KEYS_FILE")
        if spec is None and path:
            spec = Path(path).read_text()
        if not spec:
            raise KeyRingError(
                "set IDLEWIRE_CREDENTIAL_KEYS (key_id:base64 of 32 random bytes) or "
                "IDLEWIRE_CREDENTIAL_KEYS_FILE"
            )
        return cls.parse(spec)

    @staticmethod
    def generate(key_id: str) -> str:
        return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        nonce = secrets.token_bytes(12)
        ct = self._aead[self.primary_id].encrypt(nonce, plaintext, aad)
        return Sealed(self.primary_id, nonce, ct)

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        aead = self._aead.get(sealed.key_id)
        if aead is None:
            raise DecryptError(f"no key {sealed.key_id!r} in the key ring")
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, aad)
        except InvalidTag:
            raise DecryptError("credential does not authenticate under its key") from None
