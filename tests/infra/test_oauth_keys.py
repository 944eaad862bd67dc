"""The signing key's id: RFC 7638 thumbprints (pure, no stack)."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from infra.oauth_server._keys import load_or_create, thumbprint


def _uint(b64url: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4)), "big")


def test_thumbprint_matches_rfc7638_example() -> None:
    # RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    public = rsa.RSAPublicNumbers(_uint("AQAB"), _uint(n)).public_key()
    assert thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_key_is_created_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    again = load_or_create(tmp_path)
    assert first.kid == again.kid and first.public_pem == again.public_pem
    assert (tmp_path / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    jwk = first.jwk()
    assert jwk["kid"] == first.kid and jwk["alg"] == "RS256" and jwk["e"] == "AQAB"
