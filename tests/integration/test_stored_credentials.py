"""A mailbox whose password lives only in the encrypted store, set with the operator CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from infra import dovecot
from schemas.events import ConnectionState as S
from tests.conftest import ROOT
from tests.integration.helpers import mailbox, wait_for_state

pytestmark = pytest.mark.integration


async def test_password_from_the_encrypted_store(
    stack, names, imap_user, run_producer, consumer, credential_keys
):
    user = imap_user("only-in-the-vault")
    cfg = mailbox(stack, user)
    del cfg["password"]
    env = {**os.environ, **stack, "IDLEWIRE_CREDENTIAL_KEYS": credential_keys}
    subprocess.run(
        [sys.executable, "-m", "control", "set-password", cfg["mailbox_id"]],
        input=b"only-in-the-vault\n",
        env=env,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    proc = run_producer([cfg])
    await wait_for_state(consumer, names, S.IDLE)
    await asyncio.to_thread(dovecot.deliver, user, b"Subject: vault\r\n\r\nx\r\n")
    got = await consumer(names["IDLEWIRE_NEW_MAIL_TOPIC"], 1, 30)
    assert [e.subject for _, e in got] == ["vault"]
    assert "only-in-the-vault" not in proc.log_path.read_text()


async def test_no_key_ring_is_a_clear_startup_error(stack, names, imap_user, run_producer):
    cfg = mailbox(stack, imap_user())
    del cfg["password"]
    proc = run_producer([cfg], env={"IDLEWIRE_CREDENTIAL_KEYS": ""})
    assert proc.wait(30) != 0
    assert "IDLEWIRE_CREDENTIAL_KEYS" in proc.log_path.read_text()
