"""OAuth2 mailboxes end to end: Dovecot's oauth2 passdb validates JWTs issued by the stack's
real authorization server (infra/oauth_server); tokens are short-lived so that expiry and
refresh really happen."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from infra import dovecot, oauth
from schemas.events import ConnectionState as S
from tests.conftest import control_cli
from tests.integration.helpers import mailbox, states, wait_for_state

pytestmark = pytest.mark.integration


@pytest.fixture
def oauth_mailbox(stack, control_env, imap_user):  # type: ignore[no-untyped-def]
    """An IMAP user, an OAuth client, and a first token pair stored encrypted for the mailbox."""
    oauth.up()
    client_id, secret = f"idlewire-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    oauth.add_client(client_id, secret, access_token_lifetime=4)
    user = imap_user("pw-unused-with-oauth")
    oauth.add_user(user, "owner-pw")

    def make(method: str, *, lifetime: int = 4, secret_ok: bool = True) -> dict[str, Any]:
        tokens = oauth.issue_tokens(client_id, user, access_token_lifetime=lifetime)
        cfg = mailbox(
            stack,
            user,
            auth=method,
            oauth_token_url=stack["OAUTH_TOKEN_URL"],
            oauth_client_id=client_id,
            oauth_client_secret_ref="env:TEST_OAUTH_SECRET",
        )
        del cfg["password"]
        control_cli(
            control_env,
            "set-oauth",
            cfg["mailbox_id"],
            "--expires-in",
            str(lifetime),
            stdin=json.dumps({k: tokens[k] for k in ("access_token", "refresh_token")}).encode(),
        )
        return {
            "cfg": cfg,
            "user": user,
            "client_id": client_id,
            "tokens": tokens,
            "env": {"TEST_OAUTH_SECRET": secret if secret_ok else "wrong-secret"},
            "secrets": [tokens["access_token"], tokens["refresh_token"], secret],
        }

    return make


async def mail_arrives(consumer, names, user, subject):  # type: ignore[no-untyped-def]
    await asyncio.to_thread(dovecot.deliver, user, f"Subject: {subject}\r\n\r\nx\r\n".encode())
    got = await consumer(
        names["IDLEWIRE_NEW_MAIL_TOPIC"],
        10**6,
        30,
        until=lambda evs: any(getattr(e, "subject", None) == subject for _, e in evs),
    )
    assert any(getattr(e, "subject", None) == subject for _, e in got)


@pytest.mark.parametrize("method", ["xoauth2", "oauthbearer"])
async def test_login_idle_expiry_and_refresh(method, names, run_producer, consumer, oauth_mailbox):
    mb = oauth_mailbox(method)
    proc = run_producer(
        [{**mb["cfg"], "reconnect_delay_seconds": 0.2}],
        env={
            **mb["env"],
            "IDLEWIRE_TRACES": "console",
            "IDLEWIRE_METRICS": "console",
            "IDLEWIRE_METRICS_INTERVAL_MS": "1000",
        },
    )
    await wait_for_state(consumer, names, S.IDLE)
    await mail_arrives(consumer, names, mb["user"], "first")
    await asyncio.sleep(5)  # the 4 s access token expires during IDLE
    await asyncio.to_thread(dovecot.kick, mb["user"])  # the next login needs a fresh token
    seen = await wait_for_state(consumer, names, S.IDLE, count=2)
    errors = [e for e in seen if e.state is S.ERROR]
    # the kick, and no authentication error: the token was refreshed before the login
    assert errors and errors[0].error_class == "ConnectionLost"
    assert {e.error_class for e in errors} <= {"ConnectionLost", "ConnectFailed"}
    await mail_arrives(consumer, names, mb["user"], "after refresh")
    # secrets never reach Kafka, logs or traces
    raw = await consumer(names["IDLEWIRE_STATE_TOPIC"], 10**6, 2)
    raw += await consumer(names["IDLEWIRE_NEW_MAIL_TOPIC"], 10**6, 2)
    blobs = [r.value for r, _ in raw] + [v for r, _ in raw for _, v in r.headers]
    proc.terminate()
    proc.wait(30)
    log = proc.log_path.read_text()
    assert '"name": "imap.login"' in log  # traces were written and scanned
    assert '"name": "idlewire.mail.published"' in log  # and metrics
    for secret in mb["secrets"]:
        assert secret not in log
        assert all(secret.encode() not in b for b in blobs)


async def test_revoked_refresh_token_asks_for_consent_and_stops(
    names, run_producer, consumer, oauth_mailbox
):
    mb = oauth_mailbox("xoauth2", lifetime=1)
    oauth.revoke_all(username=mb["user"])
    await asyncio.sleep(1.1)  # the stored access token is expired: login must refresh first
    proc = run_producer([{**mb["cfg"], "reconnect_delay_seconds": 0.1}], env=mb["env"])
    seen = await wait_for_state(consumer, names, S.ERROR)
    assert seen[-1].error_class == "ConsentRequired"
    assert "grant access again" in (seen[-1].reason or "")
    await asyncio.sleep(2)
    again = states(await consumer(names["IDLEWIRE_STATE_TOPIC"], 10**6, 2))
    assert sum(e.state is S.CONNECTING for e in again) == 1, "retried after invalid_grant"
    assert proc.poll() is None


async def test_wrong_client_secret(names, run_producer, consumer, oauth_mailbox):
    mb = oauth_mailbox("oauthbearer", lifetime=1, secret_ok=False)
    await asyncio.sleep(1.1)
    run_producer([mb["cfg"]], env=mb["env"])
    seen = await wait_for_state(consumer, names, S.ERROR)
    assert seen[-1].error_class == "OAuthClientRejected"
    assert "wrong-secret" not in (seen[-1].reason or "")


async def test_token_endpoint_down_backs_off_then_recovers(
    names, run_producer, consumer, oauth_mailbox
):
    mb = oauth_mailbox("xoauth2", lifetime=1)
    await asyncio.sleep(1.1)
    oauth.down()
    try:
        run_producer([{**mb["cfg"], "reconnect_delay_seconds": 0.3}], env=mb["env"])
        started = time.monotonic()
        seen = await wait_for_state(consumer, names, S.ERROR, count=2)
        errors = [e for e in seen if e.state is S.ERROR]
        assert {e.error_class for e in errors} == {"TokenEndpointUnavailable"}
        assert [e.attempt for e in errors[:2]] == [1, 2]
        assert time.monotonic() - started > 0.15  # backed off, no hot loop
    finally:
        await asyncio.to_thread(oauth.up)
    await wait_for_state(consumer, names, S.IDLE, timeout=60)
    await mail_arrives(consumer, names, mb["user"], "endpoint back")
