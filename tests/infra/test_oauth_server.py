"""The test stack's OAuth 2.0 authorization server (infra/oauth.py, infra/oauth_server/) against
RFC 6749/7009 behaviour and against the real Dovecot that validates its tokens."""

from __future__ import annotations

import time
import urllib.error
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from infra import dovecot, oauth
from infra._common import HOST, IMAPS_PORT
from tests.infra import sasl

pytestmark = pytest.mark.integration

SECRET = "s3cret: with+odd%chars"  # exercises RFC 6749 §2.3.1's form-encoding in HTTP Basic


@pytest.fixture(scope="session")
def oauth_server(stack: dict[str, str]) -> dict[str, str]:
    oauth.ensure_installed()
    return oauth.up()


@pytest.fixture(scope="session")
def mail_user(oauth_server: dict[str, str]) -> tuple[str, str]:
    """A user known to both Dovecot (userdb) and the OAuth server (resource owner)."""
    user = f"oauth-{uuid.uuid4().hex[:8]}@test.idlewire"
    password = uuid.uuid4().hex
    dovecot.add_user(user, uuid.uuid4().hex)  # its IMAP password is never used here
    oauth.add_user(user, password)
    return user, password


@pytest.fixture
def client(oauth_server: dict[str, str]) -> Callable[..., str]:
    def make(**options: Any) -> str:
        client_id = f"c-{uuid.uuid4().hex[:8]}"
        oauth.add_client(client_id, SECRET, **options)
        return client_id

    return make


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def login(mechanism: str, user: str, token: str) -> sasl.Outcome:
    if mechanism == "XOAUTH2":
        initial = sasl.xoauth2(user, token)
    else:
        initial = sasl.oauthbearer(user, token, HOST, IMAPS_PORT)
    return sasl.authenticate(
        mechanism, initial, host=HOST, port=IMAPS_PORT, cafile=str(dovecot.ca_file())
    )


def first_pair(client_id: str, user: tuple[str, str], **kw: Any) -> dict[str, Any]:
    status, body = oauth.password_grant(client_id, SECRET, user[0], user[1], **kw)
    assert status == 200, body
    return body


# --- the authorization server on its own ---------------------------------------------------------


def test_metadata_jwks_and_token_format(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    status, meta = oauth._request("GET", "/.well-known/openid-configuration")
    assert status == 200
    assert meta["issuer"] == oauth.issuer()
    assert meta["token_endpoint"] == oauth.settings()["OAUTH_TOKEN_URL"]
    assert meta["revocation_endpoint"] == oauth.settings()["OAUTH_REVOCATION_URL"]
    status, jwks = oauth._request("GET", "/.well-known/jwks.json")
    assert status == 200 and len(jwks["keys"]) == 1

    pair = first_pair(client(access_token_lifetime=20), mail_user)
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 20
    header = jwt.get_unverified_header(pair["access_token"])
    assert header == {"alg": "RS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}
    key = jwt.PyJWK(jwks["keys"][0]).key
    verified = jwt.decode(
        pair["access_token"], key, algorithms=["RS256"], audience="imap", issuer=oauth.issuer()
    )
    assert verified["sub"] == mail_user[0]
    assert verified["exp"] - verified["iat"] == 20
    assert verified["scope"] == "imap"
    assert "azp" not in verified  # so Dovecot looks the key up under default/
    published = dovecot.oauth_keys_dir() / "default" / "RS256" / header["kid"]
    assert published.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert published.stat().st_mode & 0o777 == 0o644


def test_client_authentication_basic_and_post(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    client_id = client()
    for auth in ("basic", "post"):
        status, body = oauth.password_grant(client_id, SECRET, *mail_user, auth=auth)
        assert status == 200, (auth, body)


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_wrong_client_secret_is_invalid_client(
    client: Callable[..., str], mail_user: tuple[str, str], auth: str
) -> None:
    client_id = client()
    pair = first_pair(client_id, mail_user)
    for status, body in (
        oauth.password_grant(client_id, "wrong", *mail_user, auth=auth),
        oauth.refresh(client_id, "wrong", pair["refresh_token"], auth=auth),
        oauth.revoke(client_id, "wrong", pair["refresh_token"], auth=auth),
        oauth.password_grant("no-such-client", SECRET, *mail_user, auth=auth),
    ):
        assert (status, body["error"]) == (401, "invalid_client")
    # The failed attempts consumed nothing.
    assert oauth.refresh(client_id, SECRET, pair["refresh_token"])[0] == 200


def test_wrong_user_password_is_invalid_grant(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    status, body = oauth.password_grant(client(), SECRET, mail_user[0], "wrong")
    assert (status, body["error"]) == (400, "invalid_grant")


def test_protocol_errors(client: Callable[..., str], mail_user: tuple[str, str]) -> None:
    client_id = client(scope="imap offline_access")
    for form, error in (
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "password", "username": mail_user[0]}, "invalid_request"),
        (
            {"grant_type": "password", "username": mail_user[0], "password": mail_user[1],
             "scope": "imap admin"},
            "invalid_scope",
        ),
    ):  # fmt: skip
        status, body = oauth.token_request(form, client_id, SECRET)
        assert (status, body["error"]) == (400, error), form
    status, body = oauth._request("POST", "/token", json_body={"grant_type": "password"})
    assert (status, body["error"]) == (400, "invalid_request")
    # A narrower scope than the client's is granted as asked and carried by the refresh.
    pair = first_pair(client_id, mail_user, scope="offline_access")
    assert claims(pair["access_token"])["scope"] == "offline_access"
    status, refreshed = oauth.refresh(client_id, SECRET, pair["refresh_token"])
    assert status == 200 and refreshed["scope"] == "offline_access"


def test_refresh_rotates_and_a_replayed_token_kills_the_grant(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    client_id = client(access_token_lifetime=15)
    pair = first_pair(client_id, mail_user)
    status, second = oauth.refresh(client_id, SECRET, pair["refresh_token"])
    assert status == 200, second
    assert second["refresh_token"] != pair["refresh_token"]
    assert second["access_token"] != pair["access_token"]
    assert second["scope"] == "imap" and second["expires_in"] == 15
    assert claims(second["access_token"])["sub"] == mail_user[0]

    # The rotated-out token is dead ...
    status, body = oauth.refresh(client_id, SECRET, pair["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    # ... and presenting it revoked the whole grant, including the token that replaced it.
    status, body = oauth.refresh(client_id, SECRET, second["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    # A new login starts a new grant.
    assert (
        oauth.refresh(client_id, SECRET, first_pair(client_id, mail_user)["refresh_token"])[0]
        == 200
    )


def test_revoked_refresh_token_is_invalid_grant(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    client_id = client()
    pair = first_pair(client_id, mail_user)
    assert oauth.revoke(client_id, SECRET, pair["refresh_token"], auth="post") == (200, {})
    status, body = oauth.refresh(client_id, SECRET, pair["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    # RFC 7009 §2.2: an unknown token is not an error; access tokens (JWTs Dovecot checks by
    # itself) cannot be recalled, which §2.2.1 says with unsupported_token_type.
    assert oauth.revoke(client_id, SECRET, "no-such-token")[0] == 200
    status, body = oauth.revoke(
        client_id, SECRET, pair["access_token"], token_type_hint="access_token"
    )
    assert (status, body["error"]) == (400, "unsupported_token_type")
    # Revoking everything of a user (the admin API) kills its other grants too.
    other = first_pair(client_id, mail_user)
    assert oauth.revoke_all(username=mail_user[0], client_id=client_id) >= 1
    assert oauth.refresh(client_id, SECRET, other["refresh_token"])[1]["error"] == "invalid_grant"


def test_refresh_token_is_bound_to_its_client(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    pair = first_pair(client(), mail_user)
    status, body = oauth.refresh(client(), SECRET, pair["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")


def test_expired_refresh_token_is_invalid_grant(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    client_id = client(refresh_token_lifetime=1)
    pair = first_pair(client_id, mail_user)
    time.sleep(1.1)
    status, body = oauth.refresh(client_id, SECRET, pair["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")


def test_access_token_lifetime_server_client_and_request(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    def lifetime(pair: dict[str, Any]) -> int:
        c = claims(pair["access_token"])
        assert c["exp"] - c["iat"] == pair["expires_in"]
        return int(pair["expires_in"])

    assert lifetime(first_pair(client(), mail_user)) == oauth.ACCESS_TOKEN_LIFETIME
    client_id = client(access_token_lifetime=20)
    pair = first_pair(client_id, mail_user)
    assert lifetime(pair) == 20
    assert lifetime(first_pair(client_id, mail_user, access_token_lifetime=5)) == 5
    status, refreshed = oauth.refresh(
        client_id, SECRET, pair["refresh_token"], access_token_lifetime=7
    )
    assert status == 200 and lifetime(refreshed) == 7
    status, body = oauth.password_grant(client_id, SECRET, *mail_user, access_token_lifetime=0)
    assert (status, body["error"]) == (400, "invalid_request")
    assert lifetime(oauth.issue_tokens(client_id, mail_user[0], access_token_lifetime=9)) == 9


def test_state_survives_a_restart(client: Callable[..., str], mail_user: tuple[str, str]) -> None:
    """Tests stop the server to simulate an unreachable token endpoint; clients, users, refresh
    tokens and the signing key must all be there again when it comes back."""
    client_id = client()
    pair = first_pair(client_id, mail_user)
    kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    oauth.down()
    try:
        assert not oauth.is_running()
        with pytest.raises(urllib.error.URLError):
            oauth.refresh(client_id, SECRET, pair["refresh_token"])
    finally:
        oauth.up()  # the other tests of the session need it back even if this one fails
    status, body = oauth.refresh(client_id, SECRET, pair["refresh_token"])
    assert status == 200, body
    assert jwt.get_unverified_header(body["access_token"])["kid"] == kid


# --- Dovecot validating the tokens ---------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_dovecot_accepts_an_issued_token(
    client: Callable[..., str], mail_user: tuple[str, str], mechanism: str
) -> None:
    pair = first_pair(client(access_token_lifetime=20), mail_user)
    outcome = login(mechanism, mail_user[0], pair["access_token"])
    assert outcome.ok, outcome
    assert outcome.challenges == []


def test_dovecot_rejects_an_expired_token_and_accepts_the_refreshed_one(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    client_id = client()
    pair = first_pair(client_id, mail_user, access_token_lifetime=3)
    assert login("XOAUTH2", mail_user[0], pair["access_token"]).ok
    # Dovecot compares whole seconds and rejects only once exp < now.
    exp = claims(pair["access_token"])["exp"]
    time.sleep(max(0.0, exp + 1 - time.time()))

    xo = login("XOAUTH2", mail_user[0], pair["access_token"])
    assert not xo.ok
    assert xo.challenges == [{"status": "401", "schemes": "bearer", "scope": "mail"}]
    assert xo.sent_after_challenge == [b""]
    assert xo.tagged == b"A1 NO [AUTHENTICATIONFAILED] Authentication failed."

    ob = login("OAUTHBEARER", mail_user[0], pair["access_token"])
    assert not ob.ok
    assert ob.challenges == [{"status": "invalid_token"}]
    assert ob.sent_after_challenge == [b"AQ=="]
    assert ob.tagged == b"A1 NO [AUTHENTICATIONFAILED] Authentication failed."

    status, refreshed = oauth.refresh(client_id, SECRET, pair["refresh_token"])
    assert status == 200
    assert login("OAUTHBEARER", mail_user[0], refreshed["access_token"]).ok


def test_dovecot_rejects_a_token_signed_by_another_key(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    pair = first_pair(client(), mail_user)
    header = jwt.get_unverified_header(pair["access_token"])
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers = {"kid": header["kid"], "typ": "JWT"}
    forged = jwt.encode(claims(pair["access_token"]), stranger, algorithm="RS256", headers=headers)
    outcome = login("XOAUTH2", mail_user[0], forged)
    assert not outcome.ok
    assert outcome.tagged.startswith(b"A1 NO [AUTHENTICATIONFAILED]")


def test_azp_client_key_is_published_under_its_id(
    client: Callable[..., str], mail_user: tuple[str, str]
) -> None:
    """With an `azp` claim Dovecot reads `<keys>/<azp>/RS256/<kid>` instead of `default/`."""
    client_id = client(include_azp=True)
    pair = first_pair(client_id, mail_user)
    c = claims(pair["access_token"])
    assert c["azp"] == client_id
    kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    assert Path(dovecot.oauth_keys_dir() / client_id / "RS256" / kid).exists()
    assert login("XOAUTH2", mail_user[0], pair["access_token"]).ok
