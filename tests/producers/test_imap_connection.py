"""ImapConnection driven without sockets: a fake transport records what the client writes, the
test plays the server by calling data_received."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from producers import limits
from producers._imap import FETCH_ITEMS, ImapConnection
from producers.errors import (
    Action,
    AuthenticationFailed,
    CommandFailed,
    ConfigurationError,
    ConnectionLost,
    ProtocolError,
    TokenRejected,
)

CAPS = b"IMAP4rev1 IDLE LITERAL+ SASL-IR AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER"
TIMEOUT = 0.2
HDR = b"Message-ID: <m@x.test>\r\nSubject: Hello\r\n\r\n"


class FakeTransport(asyncio.Transport):
    """Records writes; abort() reports the loss to the protocol soon, like asyncio's own."""

    def __init__(self, protocol: ImapConnection) -> None:
        super().__init__()
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.aborted = False
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.aborted, "write after abort"
        self.writes.append(bytes(data))

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self._loop.call_soon(self.protocol.connection_lost, None)

    def close(self) -> None:
        self.abort()

    def is_closing(self) -> bool:
        return self.aborted

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    @property
    def sent(self) -> bytes:
        return b"".join(self.writes)


async def connect(
    caps: bytes = CAPS, timeout: float = TIMEOUT
) -> tuple[ImapConnection, FakeTransport]:
    conn = ImapConnection(asyncio.get_running_loop(), "imap.test", command_timeout=timeout)
    transport = FakeTransport(conn)
    conn.connection_made(transport)
    greeting = conn._greeting
    assert greeting is not None
    conn.data_received(b"* OK [CAPABILITY " + caps + b"] ready\r\n")
    assert greeting.done()
    conn._greeting = None  # as open() does
    return conn, transport


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def start(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.ensure_future(coro)


async def until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def fetch_response(seq: int, uid: int, header: bytes = HDR) -> bytes:
    return (
        b'* %d FETCH (UID %d RFC822.SIZE 100 INTERNALDATE "04-Nov-2026 03:01:02 +0100" '
        b"BODY[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)] {%d}\r\n"
        % (seq, uid, len(header))
        + header
        + b")\r\n"
    )


def uid_fetch(tag: bytes, after: int) -> bytes:
    return tag + b" UID FETCH %d:* " % (after + 1) + FETCH_ITEMS + b"\r\n"


async def start_idle(conn: ImapConnection, t: FakeTransport, **kwargs: Any) -> asyncio.Task[str]:
    kwargs.setdefault("renew_after", 5.0)
    kwargs.setdefault("heartbeat", 5.0)
    task = start(conn.idle(**kwargs))
    await settle()
    assert t.writes[-1] == b"A1 IDLE\r\n"
    conn.data_received(b"+ idling\r\n")
    await settle()
    assert not task.done()
    return task


# ---- greeting ---------------------------------------------------------------------------------


async def test_greeting_capabilities():
    conn, t = await connect()
    assert conn.has_capability("idle") and conn.has_capability("AUTH=XOAUTH2")
    assert not conn.has_capability("STARTTLS")
    assert t.writes == []


async def test_greeting_bye_is_remembered():
    conn = ImapConnection(asyncio.get_running_loop(), "imap.test", command_timeout=TIMEOUT)
    conn.connection_made(FakeTransport(conn))
    greeting = conn._greeting
    assert greeting is not None
    conn.data_received(b"* BYE Too many connections\r\n")
    assert greeting.done()
    assert conn._lost is not None and "Too many connections" in conn._lost


# ---- LOGIN ------------------------------------------------------------------------------------


async def test_login_with_capabilities_in_tagged_ok():
    conn, t = await connect()
    task = start(conn.login("user@x.test", "s3cret"))
    await settle()
    assert t.writes == [b'A1 LOGIN "user@x.test" "s3cret"\r\n']
    conn.data_received(b"A1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n")
    await task
    assert len(t.writes) == 1  # no CAPABILITY command: the tagged OK carried them
    assert conn.has_capability("MOVE") and not conn.has_capability("AUTH=PLAIN")


async def test_login_without_capabilities_asks_for_them():
    conn, t = await connect()
    task = start(conn.login("user", "pw"))
    await settle()
    conn.data_received(b"A1 OK Logged in\r\n")
    await settle()
    assert t.writes[-1] == b"A2 CAPABILITY\r\n"
    conn.data_received(b"* CAPABILITY IMAP4rev1 IDLE X-AFTER-LOGIN\r\nA2 OK done\r\n")
    await task
    assert conn.has_capability("X-AFTER-LOGIN")


async def test_login_rejected_without_the_password():
    conn, _t = await connect()
    task = start(conn.login("user@x.test", "hunter2-secret"))
    await settle()
    conn.data_received(b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
    with pytest.raises(AuthenticationFailed) as err:
        await task
    assert "hunter2" not in str(err.value)
    assert "AUTHENTICATIONFAILED" in str(err.value) and "user@x.test" in str(err.value)
    assert err.value.action is Action.STOP


async def test_login_bad_is_a_protocol_error():
    conn, _t = await connect()
    task = start(conn.login("user", "pw"))
    await settle()
    conn.data_received(b"A1 BAD Syntax\r\n")
    with pytest.raises(ProtocolError):
        await task


async def test_login_disabled():
    conn, t = await connect(CAPS + b" LOGINDISABLED")
    with pytest.raises(ConfigurationError):
        await conn.login("user", "pw")
    assert t.writes == []


async def test_non_ascii_password_as_literal_plus():
    conn, t = await connect()
    task = start(conn.login("user", "pässwort"))
    await settle()
    assert t.writes == [b'A1 LOGIN "user" {9+}\r\np\xc3\xa4sswort\r\n']
    conn.data_received(b"A1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
    await task


async def test_non_ascii_password_as_synchronizing_literal():
    conn, t = await connect(b"IMAP4rev1 IDLE AUTH=PLAIN")
    task = start(conn.login("user", "pässwort"))
    await settle()
    assert t.writes == [b'A1 LOGIN "user" {9}\r\n']  # waits for the server's "+"
    conn.data_received(b"+ Ready for literal data\r\n")
    await settle()
    assert t.writes[1:] == [b"p\xc3\xa4sswort\r\n"]
    conn.data_received(b"A1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
    await task
    assert len(t.writes) == 2


async def test_password_with_quote_and_backslash_is_quoted():
    conn, t = await connect()
    task = start(conn.login("user", 'a"b\\c'))
    await settle()
    assert t.writes == [b'A1 LOGIN "user" "a\\"b\\\\c"\r\n']
    conn.data_received(b"A1 OK [CAPABILITY IMAP4rev1] ok\r\n")
    await task


# ---- AUTHENTICATE -----------------------------------------------------------------------------

TOKEN = "ya29.very-secret-access-token"
XOAUTH2_IR = f"user=user@x.test\x01auth=Bearer {TOKEN}\x01\x01".encode()
ERROR_CHALLENGE = base64.b64encode(
    json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.test/"}).encode()
)


async def test_xoauth2_rejected_with_sasl_ir():
    conn, t = await connect()
    task = start(
        conn.authenticate("XOAUTH2", XOAUTH2_IR, final=b"", username="user@x.test"),
    )
    await settle()
    assert t.writes == [b"A1 AUTHENTICATE XOAUTH2 " + base64.b64encode(XOAUTH2_IR) + b"\r\n"]
    conn.data_received(b"+ " + ERROR_CHALLENGE + b"\r\n")
    await settle()
    assert t.writes[1:] == [b"\r\n"]  # the empty response that lets the server finish
    conn.data_received(b"A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n")
    with pytest.raises(TokenRejected) as err:
        await task
    message = str(err.value)
    assert "status 401" in message and "user@x.test" in message
    assert TOKEN not in message and base64.b64encode(XOAUTH2_IR).decode() not in message
    assert "ya29" not in message


async def test_oauthbearer_without_sasl_ir_sends_the_response_after_the_continuation():
    conn, t = await connect(b"IMAP4rev1 IDLE AUTH=OAUTHBEARER")
    ir = f"n,a=user@x.test,\x01auth=Bearer {TOKEN}\x01\x01".encode()
    task = start(conn.authenticate("OAUTHBEARER", ir, final=b"\x01", username="user@x.test"))
    await settle()
    assert t.writes == [b"A1 AUTHENTICATE OAUTHBEARER\r\n"]
    conn.data_received(b"+ \r\n")
    await settle()
    assert t.writes[1:] == [base64.b64encode(ir) + b"\r\n"]
    conn.data_received(b"+ " + ERROR_CHALLENGE + b"\r\n")
    await settle()
    assert t.writes[2:] == [base64.b64encode(b"\x01") + b"\r\n"]
    conn.data_received(b"A1 NO Authentication failed\r\n")
    with pytest.raises(TokenRejected, match="status 401"):
        await task


@pytest.mark.parametrize(
    ("challenge", "detail"),
    [
        (b"not base64!", "unreadable error challenge"),
        (base64.b64encode(b"{broken json"), "unreadable error challenge"),
        (base64.b64encode(b'["a list"]'), None),
        (
            base64.b64encode(b'{"status": "invalid_token", "token": "' + TOKEN.encode() + b'"}'),
            "status invalid_token",
        ),
    ],
)
async def test_odd_error_challenges(challenge, detail):
    conn, _t = await connect()
    task = start(conn.authenticate("XOAUTH2", XOAUTH2_IR, final=b"", username="u"))
    await settle()
    conn.data_received(b"+ " + challenge + b"\r\nA1 NO Invalid credentials\r\n")
    with pytest.raises(TokenRejected) as err:
        await task
    message = str(err.value)
    assert TOKEN not in message
    if detail is None:
        assert message.endswith("Invalid credentials")
    else:
        assert message.endswith(f"({detail})")


async def test_authenticate_success():
    conn, t = await connect()
    task = start(conn.authenticate("XOAUTH2", XOAUTH2_IR, final=b"", username="u"))
    await settle()
    conn.data_received(b"A1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Welcome\r\n")
    await task
    assert len(t.writes) == 1 and conn.has_capability("MOVE")


async def test_authenticate_plain_rejected_is_an_authentication_failure():
    conn, _t = await connect()
    task = start(conn.authenticate("PLAIN", b"\0u\0pw", final=b"", username="u"))
    await settle()
    conn.data_received(b"A1 NO [AUTHENTICATIONFAILED] nope\r\n")
    with pytest.raises(AuthenticationFailed) as err:
        await task
    assert not isinstance(err.value, TokenRejected)


async def test_authenticate_mechanism_not_offered():
    conn, t = await connect(b"IMAP4rev1 IDLE AUTH=PLAIN")
    with pytest.raises(ConfigurationError):
        await conn.authenticate("XOAUTH2", XOAUTH2_IR, final=b"", username="u")
    assert t.writes == []


# ---- SELECT -----------------------------------------------------------------------------------

SELECT_ANSWER = (
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] "
    b"Flags permitted.\r\n"
    b"* 17 EXISTS\r\n"
    b"* 0 RECENT\r\n"
    b"* OK [UIDVALIDITY 1732] UIDs valid\r\n"
    b"* OK [UIDNEXT 42] Predicted next UID\r\n"
    b"A1 OK [READ-WRITE] Select completed.\r\n"
)


async def test_select():
    conn, t = await connect()
    task = start(conn.select("INBOX"))
    await settle()
    assert t.writes == [b'A1 SELECT "INBOX"\r\n']
    conn.data_received(SELECT_ANSWER)
    status = await task
    assert (status.uidvalidity, status.uidnext, status.exists) == (1732, 42, 17)


async def test_select_encodes_the_folder_name():
    conn, t = await connect()
    task = start(conn.select("Entwürfe/&Co"))
    await settle()
    assert t.writes == [b'A1 SELECT "Entw&APw-rfe/&-Co"\r\n']
    conn.data_received(SELECT_ANSWER)
    await task


async def test_select_missing_folder():
    conn, _t = await connect()
    task = start(conn.select("Nope"))
    await settle()
    conn.data_received(b"A1 NO [NONEXISTENT] Mailbox doesn't exist: Nope\r\n")
    with pytest.raises(ConfigurationError):
        await task


# ---- IDLE -------------------------------------------------------------------------------------


async def test_idle_exists_pipelines_done_and_fetch_in_one_write():
    conn, t = await connect()
    task = await start_idle(conn, t, then_fetch_after=7)
    conn.data_received(b"* 9 EXISTS\r\n")
    await settle()
    assert t.writes[-1] == b"DONE\r\n" + uid_fetch(b"A2", 7)
    assert len(t.writes) == 2
    conn.data_received(b"A1 OK Idle completed (3.1 + 3.1 secs).\r\n")
    assert await task == "exists"
    assert not conn.exists_pending()

    fetch = start(conn.fetch_after(7))
    await settle()
    assert len(t.writes) == 2  # the pipelined UID FETCH is used, no new command
    conn.data_received(fetch_response(8, 8) + fetch_response(9, 9) + b"A2 OK Fetch completed\r\n")
    messages = await fetch
    assert [m.uid for m in messages] == [8, 9]
    assert messages[0].header == HDR and messages[0].size == 100


async def test_pipelined_fetch_answered_before_fetch_after_is_called():
    conn, t = await connect()
    task = await start_idle(conn, t, then_fetch_after=7)
    conn.data_received(b"* 8 EXISTS\r\n")
    await settle()
    conn.data_received(
        b"A1 OK Idle completed\r\n" + fetch_response(8, 8) + b"A2 OK Fetch completed\r\n"
    )
    assert await task == "exists"
    assert [m.uid for m in await conn.fetch_after(7)] == [8]
    assert len(t.writes) == 2


async def test_pipelined_fetch_for_another_uid_is_not_used():
    conn, t = await connect()
    task = await start_idle(conn, t, then_fetch_after=7)
    conn.data_received(b"* 8 EXISTS\r\n")
    await settle()
    conn.data_received(b"A1 OK Idle completed\r\nA2 OK Fetch completed\r\n")
    assert await task == "exists"
    fetch = start(conn.fetch_after(8))
    await settle()
    assert t.writes[-1] == uid_fetch(b"A3", 8)
    conn.data_received(fetch_response(9, 10) + b"A3 OK Fetch completed\r\n")
    assert [m.uid for m in await fetch] == [10]


async def test_idle_exists_without_prefetch_sends_only_done():
    conn, t = await connect()
    task = await start_idle(conn, t)
    conn.data_received(b"* OK Still here\r\n")  # keepalive: IDLE goes on
    await settle()
    assert not task.done() and len(t.writes) == 1
    conn.data_received(b"* 5 EXISTS\r\n")
    await settle()
    assert t.writes[1:] == [b"DONE\r\n"]
    conn.data_received(b"A1 OK Idle completed\r\n")
    assert await task == "exists"
    assert conn.exists_pending()  # no UID FETCH was sent yet


async def test_idle_returns_at_once_when_exists_is_pending():
    conn, t = await connect()
    task = start(conn.noop())
    await settle()
    conn.data_received(b"* 3 EXISTS\r\nA1 OK NOOP completed\r\n")
    await task
    assert conn.exists_pending()
    assert await conn.idle(renew_after=5, heartbeat=5, then_fetch_after=2) == "exists"
    assert len(t.writes) == 1


async def test_keepalive_does_not_end_idle():
    conn, t = await connect()
    task = await start_idle(conn, t, renew_after=5.0, heartbeat=0.15)
    for _ in range(6):  # silent for longer than the heartbeat, but for keepalives: no DONE
        await asyncio.sleep(0.03)
        conn.data_received(b"* OK Still here\r\n")
    assert not task.done() and len(t.writes) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert t.writes[-1] == b"DONE\r\n"  # a cancelled IDLE is ended


async def test_idle_renewal():
    conn, t = await connect()
    task = await start_idle(conn, t, renew_after=0.05, heartbeat=5.0)
    await until(lambda: len(t.writes) == 2)
    assert t.writes[1] == b"DONE\r\n"
    conn.data_received(b"A1 OK Idle completed\r\n")
    assert await task == "renew"


async def test_idle_silence_ends_idle_and_a_silent_server_is_lost():
    conn, t = await connect()
    task = await start_idle(conn, t, renew_after=5.0, heartbeat=0.05)
    await until(lambda: len(t.writes) == 2)
    assert t.writes[1] == b"DONE\r\n"
    with pytest.raises(ConnectionLost):
        await task  # DONE not answered within the command timeout
    assert t.aborted


async def test_idle_rejected():
    conn, t = await connect()
    task = start(conn.idle(renew_after=5, heartbeat=5))
    await settle()
    conn.data_received(b"A1 NO IDLE not allowed now\r\n")
    with pytest.raises(CommandFailed):
        await task
    assert len(t.writes) == 1  # no DONE for an IDLE that never started


async def test_idle_not_started_within_the_timeout():
    conn, t = await connect()
    with pytest.raises(ConnectionLost):
        await conn.idle(renew_after=5, heartbeat=5)
    assert t.aborted and t.writes == [b"A1 IDLE\r\n"]


async def test_idle_needs_the_capability():
    conn, _t = await connect(b"IMAP4rev1")
    with pytest.raises(ConfigurationError):
        await conn.idle(renew_after=5, heartbeat=5)


async def test_connection_lost_during_idle():
    conn, t = await connect()
    task = await start_idle(conn, t)
    conn.connection_lost(ConnectionResetError())
    with pytest.raises(ConnectionLost, match="ConnectionResetError"):
        await task
    assert t.writes == [b"A1 IDLE\r\n"]  # nothing written to a lost connection


async def test_bye_during_idle():
    conn, t = await connect()
    task = await start_idle(conn, t)
    conn.data_received(b"* BYE Server shutting down.\r\n")
    conn.connection_lost(None)
    with pytest.raises(ConnectionLost, match="Server shutting down"):
        await task


# ---- losses and protocol errors ---------------------------------------------------------------


async def test_command_timeout():
    conn, t = await connect()
    with pytest.raises(ConnectionLost, match="no answer"):
        await conn.noop()
    assert t.aborted
    await settle()
    with pytest.raises(ConnectionLost):  # the connection is unusable afterwards
        await conn.noop()


async def test_bye_then_connection_lost():
    conn, _t = await connect()
    task = start(conn.noop())
    await settle()
    conn.data_received(b"* BYE Autologout; idle for too long\r\n")
    await settle()
    assert not task.done()
    conn.connection_lost(None)
    with pytest.raises(ConnectionLost, match="Autologout; idle for too long"):
        await task


async def test_connection_closed_by_server():
    conn, _t = await connect()
    task = start(conn.noop())
    await settle()
    conn.connection_lost(None)
    with pytest.raises(ConnectionLost, match="closed by server"):
        await task


async def test_tagged_response_with_unknown_tag_aborts():
    conn, t = await connect()
    task = start(conn.noop())
    await settle()
    conn.data_received(b"A9 OK what?\r\n")
    assert t.aborted
    with pytest.raises(ConnectionLost, match="did not send"):
        await task


async def test_oversized_line_aborts():
    conn, t = await connect()
    task = start(conn.noop())
    await settle()
    conn.data_received(b"* OK " + b"x" * limits.MAX_LINE_BYTES)
    assert t.aborted
    with pytest.raises(ConnectionLost, match="size limit"):
        await task


async def test_oversized_literal_aborts():
    conn, t = await connect()
    task = start(conn.noop())
    await settle()
    conn.data_received(b"* 1 FETCH (BODY[] {%d}\r\n" % (limits.MAX_LITERAL_BYTES + 1))
    assert t.aborted
    with pytest.raises(ConnectionLost):
        await task


async def test_unexpected_continuation_aborts():
    conn, t = await connect()
    task = start(conn.noop())
    await settle()
    conn.data_received(b"+ go ahead\r\n")
    assert t.aborted
    with pytest.raises(ConnectionLost, match="continuation"):
        await task


async def test_response_size_cap_per_command(monkeypatch):
    monkeypatch.setattr(limits, "MAX_COMMAND_RESPONSE_BYTES", 200)
    conn, t = await connect()
    task = start(conn.fetch_after(0))
    await settle()
    conn.data_received(fetch_response(1, 1, b"X" * 150) + fetch_response(2, 2, b"Y" * 150))
    assert t.aborted
    with pytest.raises(ConnectionLost, match="size limit"):
        await task


async def test_logout_during_idle_ends_idle_then_logs_out():
    conn, t = await connect()
    task = await start_idle(conn, t)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    logout = start(conn.logout())
    await settle()
    assert t.writes[1:] == [b"DONE\r\n", b"A2 LOGOUT\r\n"]
    conn.data_received(b"* BYE Logging out\r\nA1 OK Idle completed\r\nA2 OK Logout completed\r\n")
    await logout
    assert t.aborted


# ---- UID FETCH --------------------------------------------------------------------------------


async def test_fetch_keeps_only_the_first_batch(monkeypatch):
    monkeypatch.setattr(limits, "FETCH_BATCH", 3)
    conn, t = await connect()
    task = start(conn.fetch_after(0))
    await settle()
    assert t.writes == [uid_fetch(b"A1", 0)]
    conn.data_received(b"".join(fetch_response(i, i) for i in range(1, 7)))
    [pending] = conn._pending
    assert pending.lines is not None
    assert sum(b" FETCH " in line for line in pending.lines) == 3  # memory stays bounded
    conn.data_received(b"A1 OK Fetch completed\r\n")
    assert [m.uid for m in await task] == [1, 2, 3]


async def test_fetch_drops_uids_at_or_below_last_uid():
    conn, t = await connect()
    task = start(conn.fetch_after(10))
    await settle()
    assert t.writes == [uid_fetch(b"A1", 10)]
    # `11:*` with no new mail: the server returns its highest message, UID 10
    conn.data_received(fetch_response(4, 10) + b"A1 OK Fetch completed\r\n")
    assert await task == []


async def test_fetch_ignores_flag_updates_and_sorts_by_uid():
    conn, _t = await connect()
    task = start(conn.fetch_after(10))
    await settle()
    conn.data_received(
        fetch_response(6, 13)
        + b"* 2 FETCH (FLAGS (\\Seen))\r\n"
        + fetch_response(5, 11)
        + fetch_response(4, 10)
        + b"A1 OK Fetch completed\r\n"
    )
    assert [m.uid for m in await task] == [11, 13]


async def test_fetch_no_is_a_command_failure():
    conn, _t = await connect()
    task = start(conn.fetch_after(0))
    await settle()
    conn.data_received(b"A1 NO [SERVERBUG] try again\r\n")
    with pytest.raises(CommandFailed):
        await task


async def test_exists_during_fetch_stays_pending():
    conn, _t = await connect()
    task = start(conn.fetch_after(0))
    await settle()
    assert not conn.exists_pending()
    conn.data_received(fetch_response(1, 1) + b"* 2 EXISTS\r\nA1 OK Fetch completed\r\n")
    assert [m.uid for m in await task] == [1]
    assert conn.exists_pending()  # mail that arrived after the FETCH was sent


async def test_keepalive_without_a_socket_is_a_no_op():
    conn, t = await connect()
    conn.enable_keepalive()  # the fake transport has no socket
    assert t.writes == []
