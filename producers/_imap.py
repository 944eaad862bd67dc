"""The IMAP edge: the only module that imports aioimaplib.

It hides aioimaplib's known pitfalls (docs/imap-adapter.md):
- an untagged EXISTS that arrives while no IDLE/NOOP is pending is dropped by aioimaplib: our
  protocol subclass records every EXISTS before aioimaplib sees it, so no wake-up is lost;
- on connection loss aioimaplib leaves pending futures hanging: every call here races the
  connection-lost signal and a timeout;
- no STARTTLS in aioimaplib: done here with `loop.start_tls`;
- unbounded buffers: a line or literal larger than the caps in `limits` aborts the connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import socket
import ssl
import time
from asyncio import sslproto
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aioimaplib

from producers import limits
from producers.checkpoint import FolderStatus
from producers.errors import (
    AuthenticationFailed,
    CommandFailed,
    ConfigurationError,
    ConnectFailed,
    ConnectionLost,
    ProtocolError,
    TLSFailed,
    TokenRejected,
)
from producers.imap_responses import FetchedMessage, parse_fetch, parse_select

T = TypeVar("T")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")
FETCH_ITEMS = (
    "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)])"
)


def tune_tls_memory() -> None:
    """Cap asyncio's per-connection TLS read buffer at `limits.TLS_READ_BUFFER_BYTES`.

    CPython (3.11 to 3.13) allocates `bytearray(SSLProtocol.max_size)`, 256 KiB, for every TLS
    connection and keeps it while the connection lives: with thousands of idle IMAP connections
    that buffer is most of the process's memory. The class attribute is the only hook (asyncio
    creates the protocol itself); it is process-wide, so it also applies to other TLS clients in
    the process, which merely read in smaller chunks. Only ever lowered; idempotent.
    """
    proto = sslproto.SSLProtocol
    if getattr(proto, "max_size", 0) > limits.TLS_READ_BUFFER_BYTES:
        proto.max_size = limits.TLS_READ_BUFFER_BYTES


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol plus: EXISTS tracking, last-receive time, loss signal, buffer caps."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, None)
        self.exists_seen = asyncio.Event()
        self.lost = asyncio.Event()
        self.wake = asyncio.Event()  # set with exists_seen or lost: what IDLE waits on
        self.lost_reason = "connection closed by server"
        self.last_rx = time.monotonic()
        # SASL exchange of a pending AUTHENTICATE: responses still to send on "+", then the
        # reply that ends a failed exchange (aioimaplib would leave it hanging on the challenge).
        self.sasl_responses: list[bytes] = []
        self.sasl_final = b""
        self.sasl_challenge: bytes | None = None

    def _continuation(self, line: bytes) -> None:
        cmd = self.pending_sync_command
        if cmd is None or cmd.name != "AUTHENTICATE" or self.transport is None:
            super()._continuation(line)
        elif self.sasl_responses:
            self.transport.write(self.sasl_responses.pop(0) + b"\r\n")
        else:
            self.sasl_challenge = bytes(line[1:]).strip()[: limits.MAX_HEADER_BYTES]
            self.transport.write(self.sasl_final + b"\r\n")

    def data_received(self, d: bytes) -> None:
        self.last_rx = time.monotonic()
        for line in (self.incomplete_line + d).split(b"\r\n"):
            if _EXISTS.match(line):
                self.exists_seen.set()
                self.wake.set()
        try:
            super().data_received(d)
        except Exception as exc:  # aioimaplib raises on responses it cannot place
            self._fail(f"unparseable server response ({type(exc).__name__})")
            return
        cmd = self.current_command
        if len(self.incomplete_line) > limits.MAX_LINE_BYTES or (
            cmd is not None and getattr(cmd, "_expected_size", 0) > limits.MAX_LITERAL_BYTES
        ):
            self._fail("server response exceeds the size limits")

    def _fail(self, reason: str) -> None:
        self.lost_reason = reason
        self.lost.set()
        self.wake.set()
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.is_set() and exc is not None:
            self.lost_reason = f"connection lost: {type(exc).__name__}"
        self.lost.set()
        self.wake.set()
        super().connection_lost(exc)


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]
    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


class ImapConnection:
    """One IMAP connection to one mailbox, with the few operations the producer needs."""

    def __init__(self, client: _Client, host: str, command_timeout: float) -> None:
        self._client = client
        self._host = host
        self._timeout = command_timeout

    @property
    def _protocol(self) -> _Protocol:
        proto: _Protocol = self._client.protocol
        return proto

    @property
    def last_rx(self) -> float:
        return self._protocol.last_rx

    # ---- plumbing -------------------------------------------------------------------------
    async def _call(self, aw: Awaitable[T], what: str, timeout: float | None = None) -> T:
        """Await `aw` unless the connection dies or the command timeout passes first."""
        timeout = timeout or self._timeout
        task = asyncio.ensure_future(aw)
        lost = asyncio.ensure_future(self._protocol.lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
        if task in done:
            try:
                return task.result()
            except (TimeoutError, aioimaplib.CommandTimeout) as exc:
                self.abort()
                raise ConnectionLost(f"{what}: no answer within {timeout:.0f}s") from exc
            except aioimaplib.AioImapException as exc:
                self.abort()
                raise ProtocolError(f"{what}: {type(exc).__name__}") from exc
        task.cancel()
        if self._protocol.lost.is_set():
            raise ConnectionLost(f"{what}: {self._protocol.lost_reason}")
        self.abort()
        raise ConnectionLost(f"{what}: no answer within {timeout:.0f}s")

    @staticmethod
    def _check(response: Any, what: str) -> list[bytes]:
        if response.result != "OK":
            text = b" ".join(bytes(x) for x in response.lines[-1:]).decode("utf-8", "replace")
            raise CommandFailed(f"{what} failed: {response.result} {text[:200]}")
        return list(response.lines)

    # ---- opening --------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        security: str,
        ssl_context: ssl.SSLContext | None,
        timeout: float = limits.CONNECT_TIMEOUT_SECONDS,
        command_timeout: float = limits.COMMAND_TIMEOUT_SECONDS,
    ) -> ImapConnection:
        """TCP (+ implicit TLS), greeting, and STARTTLS when `security == "starttls"`."""
        tune_tls_memory()
        implicit = ssl_context if security == "tls" else None
        client = _Client(host=host, port=port, timeout=command_timeout, ssl_context=implicit)
        conn = cls(client, host, command_timeout)
        try:
            await asyncio.wait_for(client.wait_hello_from_server(), timeout)
        except ssl.SSLError as exc:
            conn.abort()
            raise TLSFailed(f"TLS with {host}:{port} failed: {exc.reason or exc}") from exc
        except (TimeoutError, OSError) as exc:
            conn.abort()
            detail = (
                type(exc).__name__
                if isinstance(exc, asyncio.TimeoutError)
                else (exc.strerror or str(exc))
            )
            raise ConnectFailed(f"cannot connect to {host}:{port}: {detail}") from exc
        if security == "starttls":
            await conn._starttls(ssl_context)
        return conn

    async def _starttls(self, ssl_context: ssl.SSLContext | None) -> None:
        proto = self._protocol
        if "STARTTLS" not in proto.capabilities:
            self.abort()
            raise ConfigurationError("server does not offer STARTTLS")
        cmd = aioimaplib.Command("STARTTLS", proto.new_tag(), loop=proto.loop)
        self._check(await self._call(proto.execute(cmd), "STARTTLS"), "STARTTLS")
        loop = asyncio.get_running_loop()
        ctx = ssl_context or ssl.create_default_context()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(proto.transport, proto, ctx, server_hostname=self._host),
                limits.CONNECT_TIMEOUT_SECONDS,
            )
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            self.abort()
            raise TLSFailed(f"STARTTLS handshake with {self._host} failed: {exc}") from exc
        proto.transport = transport
        await self._call(proto.capability(), "CAPABILITY")

    # ---- commands -------------------------------------------------------------------------
    def enable_keepalive(self, idle: int = 60, interval: int = 15, count: int = 4) -> None:
        """TCP keepalive: a peer that vanished without FIN is noticed within about 2 minutes."""
        transport = self._protocol.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)

    def has_capability(self, name: str) -> bool:
        return bool(self._client.has_capability(name))

    async def login(self, username: str, password: str) -> None:
        if self.has_capability("LOGINDISABLED"):
            raise ConfigurationError("server refuses LOGIN on this connection (LOGINDISABLED)")
        response = await self._call(self._client.login(username, password), "LOGIN")
        if response.result == "NO":
            # The server's text (e.g. [AUTHENTICATIONFAILED]) is safe: it never echoes the password.
            text = bytes(response.lines[-1]).decode("utf-8", "replace")[:200]
            raise AuthenticationFailed(f"login rejected for {username}: {text}")
        self._check(response, "LOGIN")

    async def authenticate(
        self, mechanism: str, initial_response: bytes, *, final: bytes, username: str
    ) -> None:
        """SASL AUTHENTICATE (RFC 3501 6.2.2) with an initial response (RFC 4959 when offered).

        `final` answers an error challenge (XOAUTH2: empty; OAUTHBEARER: %x01) so the server
        completes with NO instead of waiting. Raises TokenRejected for a rejected bearer token,
        AuthenticationFailed for other rejections.
        """
        proto = self._protocol
        if f"AUTH={mechanism}" not in proto.capabilities:
            raise ConfigurationError(f"server does not offer AUTH={mechanism}")
        ir = base64.b64encode(initial_response)
        with_ir = "SASL-IR" in proto.capabilities
        proto.sasl_responses = [] if with_ir else [ir]
        proto.sasl_final, proto.sasl_challenge = base64.b64encode(final), None
        args = (mechanism, ir.decode()) if with_ir else (mechanism,)
        cmd = aioimaplib.Command("AUTHENTICATE", proto.new_tag(), *args, loop=proto.loop)
        response = await self._call(proto.execute(cmd, scrub=ir.decode()), "AUTHENTICATE")
        if response.result == "OK":
            proto.state = aioimaplib.AUTH
            await self._call(proto.capability(), "CAPABILITY")
            return
        text = bytes(response.lines[-1]).decode("utf-8", "replace")[:200]
        detail = _sasl_error(proto.sasl_challenge)
        reason = f"{mechanism} rejected for {username}: {text}{f' ({detail})' if detail else ''}"
        if mechanism in ("XOAUTH2", "OAUTHBEARER") and response.result == "NO":
            raise TokenRejected(reason)
        raise AuthenticationFailed(reason)

    async def select(self, folder: str) -> FolderStatus:
        response = await self._call(self._client.select(folder), "SELECT")
        if response.result == "NO":
            raise ConfigurationError(f"cannot select folder {folder!r}")
        return parse_select(self._check(response, "SELECT"))

    async def fetch_after(self, last_uid: int) -> list[FetchedMessage]:
        """Messages with UID > last_uid, at most `limits.FETCH_BATCH`, in UID order."""
        self._protocol.exists_seen.clear()
        response = await self._call(
            self._client.uid("fetch", f"{last_uid + 1}:*", FETCH_ITEMS), "UID FETCH"
        )
        # `N:*` returns the highest message even when its UID < N (RFC 3501): filter.
        messages = sorted(
            (m for m in parse_fetch(self._check(response, "UID FETCH")) if m.uid > last_uid),
            key=lambda m: m.uid,
        )
        return messages[: limits.FETCH_BATCH]

    def exists_pending(self) -> bool:
        return self._protocol.exists_seen.is_set()

    async def idle(self, *, renew_after: float, heartbeat: float) -> str:
        """IDLE until new mail, `renew_after` seconds, or silence longer than `heartbeat`.

        Returns "exists" or "renew". Raises ConnectionLost when the server vanished.
        """
        if self.exists_pending():
            return "exists"
        if not self.has_capability("IDLE"):
            raise ConfigurationError("server has no IDLE capability")
        idle_task = await self._call(self._client.idle_start(timeout=renew_after + 60), "IDLE")
        outcome = "renew"
        deadline = time.monotonic() + renew_after
        try:
            while True:
                now = time.monotonic()
                if self._protocol.lost.is_set():
                    raise ConnectionLost(f"IDLE: {self._protocol.lost_reason}")
                if self.exists_pending():
                    outcome = "exists"
                    break
                if now >= deadline:
                    break
                if now - self._protocol.last_rx > heartbeat:
                    # Silence: end IDLE; the server must answer DONE, or it is gone.
                    break
                wait = min(deadline - now, heartbeat - (now - self._protocol.last_rx)) + 0.01
                # Keepalives ("* OK Still here") pile up in aioimaplib's queue until IDLE ends.
                while not self._protocol.idle_queue.empty():
                    self._protocol.idle_queue.get_nowait()
                # One event and no extra tasks per wait: at 10,000 mailboxes every wake-up's
                # garbage counts (docs/benchmarks.md, finding 3).
                self._protocol.wake.clear()
                if self.exists_pending() or self._protocol.lost.is_set():
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wait, 0.01)):
                        await self._protocol.wake.wait()
        finally:
            if not self._protocol.lost.is_set() and self._client.has_pending_idle():
                self._client.idle_done()
        await self._call(idle_task, "DONE")
        # drain what the IDLE queue collected so it does not grow across renewals
        while not self._protocol.idle_queue.empty():
            self._protocol.idle_queue.get_nowait()
        return outcome

    async def noop(self) -> None:
        self._check(await self._call(self._client.noop(), "NOOP"), "NOOP")

    async def logout(self) -> None:
        with contextlib.suppress(Exception):
            await self._call(self._client.logout(), "LOGOUT", timeout=5.0)
        self.abort()

    def abort(self) -> None:
        # aioimaplib's IDLE renewal timer (call_later(renew_after + 60)) and its helper tasks
        # hold the client: left alone they keep a dropped connection (~60 KiB with TLS) alive
        # for up to ~30 minutes, doubling RSS after a server restart (docs/benchmarks.md).
        client = self._client
        if client._idle_waiter is not None:
            client._idle_waiter.cancel()
            client._idle_waiter = None
        for task in list(client.tasks):
            task.cancel()
        transport = getattr(self._protocol, "transport", None)
        if transport is not None:
            transport.abort()
        else:
            self._client._client_task.cancel()


def _sasl_error(challenge: bytes | None) -> str | None:
    """The server's JSON error challenge (RFC 7628 3.2.2), reduced to its status; never secrets."""
    if not challenge:
        return None
    try:
        data = json.loads(base64.b64decode(challenge, validate=True))
    except (ValueError, binascii.Error):
        return "unreadable error challenge"
    status = data.get("status") if isinstance(data, dict) else None
    return f"status {str(status)[:40]}" if status is not None else None


OpenConnection = Callable[..., Awaitable[ImapConnection]]
