"""The IMAP edge: one asyncio protocol object per connection, driving the sans-IO wire module.

Why our own client rather than aioimaplib: docs/decisions.md ("IMAP client"). In short, at
10,000 idle TLS connections every per-connection object counts (aioimaplib kept ~13 KiB of
Events, Queues, Conditions and a capability set per connection and needed five compensations:
dropped EXISTS, hanging futures and timers after a connection loss, no STARTTLS, no
OAUTHBEARER, a hang on a rejected XOAUTH2 token). This module keeps one object with slots per
connection, no task and no Event while idle, and sends DONE and the UID FETCH in one write.

Every wait races the connection's loss and a timeout; every buffer is capped (`limits`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import socket
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

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
from producers.imap_wire import (
    CONTINUATION,
    UNTAGGED,
    Response,
    ResponseReader,
    command,
    encode_mailbox,
)

FETCH_ITEMS = (
    b"(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)])"
)
_NO_CAPS: frozenset[str] = frozenset()


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


class _Pending:
    """A command sent and not yet answered with its tagged response."""

    __slots__ = ("fetch_budget", "future", "lines", "on_continue", "size", "tag")

    def __init__(
        self,
        tag: bytes,
        future: asyncio.Future[Response | None],
        collect: bool,
        on_continue: Callable[[bytes], None] | None,
    ) -> None:
        self.tag = tag
        self.future = future
        self.lines: list[bytes] | None = [] if collect else None
        self.size = 0
        self.on_continue = on_continue
        self.fetch_budget = limits.FETCH_BATCH


class _Result:
    __slots__ = ("lines", "status", "text")

    def __init__(self, status: str, text: bytes, lines: list[bytes]) -> None:
        self.status, self.text, self.lines = status, text, lines

    def text_str(self) -> str:
        return self.text.decode("utf-8", "replace")[:200]


def _resolve(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


def _settle(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class ImapConnection(asyncio.Protocol):
    """One IMAP connection to one mailbox, with the few operations the producer needs."""

    __slots__ = (
        "_caps",
        "_exists",
        "_greeting",
        "_host",
        "_idle_tag",
        "_loop",
        "_lost",
        "_next_tag",
        "_pending",
        "_prefetch",
        "_reader",
        "_timeout",
        "_waiter",
        "last_rx",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, command_timeout: float) -> None:
        self._loop = loop
        self._host = host
        self._timeout = command_timeout
        self.transport: asyncio.Transport | None = None
        self._reader = ResponseReader()
        self._caps = _NO_CAPS
        self._pending: list[_Pending] = []
        self._next_tag = 0
        self._greeting: asyncio.Future[None] | None = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None  # what idle() sleeps on
        self._exists = False  # an untagged EXISTS arrived since the last UID FETCH was sent
        self._lost: str | None = None  # why the connection is gone, once it is
        self.last_rx = time.monotonic()
        self._idle_tag: bytes | None = None  # tag of a running IDLE
        self._prefetch: tuple[int, _Pending] | None = None  # UID FETCH pipelined after DONE

    # ---- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        try:
            responses = self._reader.feed(data)
            for r in responses:
                self._dispatch(r)
        except ProtocolError as exc:
            self._fail(str(exc))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = (
                f"connection lost: {type(exc).__name__}" if exc else "connection closed by server"
            )
        self.transport = None
        self._wake()
        if self._greeting is not None:
            _resolve(self._greeting)
        pending, self._pending = self._pending, []
        for p in pending:
            if not p.future.done():
                p.future.set_result(None)

    # ---- incoming -----------------------------------------------------------------------------
    def _dispatch(self, r: Response) -> None:
        if r.tag == UNTAGGED:
            self._untagged(r)
        elif r.tag == CONTINUATION:
            p = next((p for p in self._pending if p.on_continue is not None), None)
            if p is None or p.on_continue is None:
                raise ProtocolError("unexpected continuation request from the server")
            p.on_continue(r.text)
        else:
            for i, p in enumerate(self._pending):
                if p.tag == r.tag:
                    del self._pending[i]
                    if (caps := r.capabilities()) is not None:
                        self._caps = caps
                    if not p.future.done():
                        p.future.set_result(r)
                    return
            raise ProtocolError("tagged response for a command we did not send")

    def _untagged(self, r: Response) -> None:
        if r.exists is not None:
            self._exists = True
            self._wake()
        if (caps := r.capabilities()) is not None:
            self._caps = caps
        if self._greeting is not None:
            if r.status == "BYE":
                self._lost = f"server refused the connection: {_text(r.text)}"
            elif r.status not in ("OK", "PREAUTH"):
                raise ProtocolError("malformed greeting")
            _resolve(self._greeting)
            self._greeting = None
            return
        if r.status == "BYE":
            self._lost = f"server closed the connection: {_text(r.text)}"
        fetch = b" FETCH " in r.lines[0][:24]
        for p in self._pending:
            if p.lines is None:
                continue
            if fetch:
                # UID FETCH last+1:* on a long backlog: keep the first batch (ascending UIDs),
                # the rest is fetched in the next round. Bounds memory whatever the server sends.
                if p.fetch_budget <= 0:
                    continue
                p.fetch_budget -= 1
            p.size += sum(len(x) for x in r.lines)
            if p.size > limits.MAX_COMMAND_RESPONSE_BYTES:
                raise ProtocolError("server response to one command exceeds the size limit")
            p.lines.extend(r.lines)

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)

    def _fail(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        if self.transport is not None:
            self.transport.abort()

    # ---- outgoing -----------------------------------------------------------------------------
    def _tag(self) -> bytes:
        self._next_tag += 1
        return b"A%d" % self._next_tag

    def _send(
        self,
        name: str,
        *args: str | bytes,
        collect: bool = True,
        on_continue: Callable[[bytes], None] | None = None,
        prefix: bytes = b"",
    ) -> _Pending:
        if self.transport is None or self._lost is not None:
            raise ConnectionLost(f"{name}: {self._lost or 'not connected'}")
        tag = self._tag()
        chunks = command(tag, name, *args, literal_plus="LITERAL+" in self._caps)
        if len(chunks) > 1:
            rest = chunks[1:]

            def next_chunk(_: bytes) -> None:
                assert self.transport is not None
                self.transport.write(rest.pop(0))
                if not rest:
                    p.on_continue = on_continue

            cont: Callable[[bytes], None] | None = next_chunk
        else:
            cont = on_continue
        p = _Pending(tag, self._loop.create_future(), collect, cont)
        self._pending.append(p)
        self.transport.write(prefix + chunks[0])
        return p

    async def _wait(self, p: _Pending, what: str, timeout: float | None = None) -> _Result:
        timeout = timeout or self._timeout
        timer = self._loop.call_later(timeout, _resolve, p.future)
        try:
            r = await p.future
        finally:
            timer.cancel()
        if r is None:
            if self._lost is not None:
                raise ConnectionLost(f"{what}: {self._lost}")
            self._fail(f"{what}: no answer within {timeout:g}s")
            raise ConnectionLost(f"{what}: no answer within {timeout:g}s")
        if r.status == "BAD":
            raise ProtocolError(f"{what} rejected by the server: BAD {_text(r.text)}")
        return _Result(r.status, r.text, p.lines or [])

    async def _run(self, what: str, *args: str | bytes, timeout: float | None = None) -> _Result:
        return await self._wait(self._send(what, *args), what.split()[0], timeout)

    @staticmethod
    def _check(result: _Result, what: str) -> list[bytes]:
        if result.status != "OK":
            raise CommandFailed(f"{what} failed: {result.status} {result.text_str()}")
        return result.lines

    async def _refresh_capabilities(self, result: _Result) -> None:
        if b"[CAPABILITY " not in result.text.upper():
            self._check(await self._run("CAPABILITY"), "CAPABILITY")

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
        loop = asyncio.get_running_loop()
        conn = cls(loop, host, command_timeout)
        implicit = ssl_context if security == "tls" else None
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: conn, host, port, ssl=implicit)
                assert conn._greeting is not None
                await conn._greeting
        except ssl.SSLError as exc:
            conn.abort()
            raise TLSFailed(f"TLS with {host}:{port} failed: {exc.reason or exc}") from exc
        except (TimeoutError, OSError) as exc:
            conn.abort()
            detail = type(exc).__name__ if isinstance(exc, TimeoutError) else exc.strerror
            raise ConnectFailed(f"cannot connect to {host}:{port}: {detail or exc}") from exc
        if conn._lost is not None:
            conn.abort()
            raise ConnectFailed(f"{host}:{port}: {conn._lost}")
        conn._greeting = None
        if conn.transport is not None and implicit is not None:
            _drop_peercert(conn.transport)
        if not conn._caps:
            conn._check(await conn._run("CAPABILITY"), "CAPABILITY")
        if security == "starttls":
            await conn._starttls(ssl_context)
        return conn

    async def _starttls(self, ssl_context: ssl.SSLContext | None) -> None:
        if "STARTTLS" not in self._caps:
            self.abort()
            raise ConfigurationError("server does not offer STARTTLS")
        self._check(await self._run("STARTTLS"), "STARTTLS")
        self._caps = _NO_CAPS  # RFC 3501 6.2.1: forget what was said in clear
        assert self.transport is not None
        ctx = ssl_context or ssl.create_default_context()
        try:
            transport = await asyncio.wait_for(
                self._loop.start_tls(self.transport, self, ctx, server_hostname=self._host),
                limits.CONNECT_TIMEOUT_SECONDS,
            )
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            self.abort()
            raise TLSFailed(f"STARTTLS handshake with {self._host} failed: {exc}") from exc
        if transport is None:
            raise ConnectionLost("STARTTLS: connection closed during the handshake")
        self.transport = transport
        _drop_peercert(transport)
        self._check(await self._run("CAPABILITY"), "CAPABILITY")

    # ---- commands -------------------------------------------------------------------------
    def enable_keepalive(self, idle: int = 60, interval: int = 15, count: int = 4) -> None:
        """TCP keepalive: a peer that vanished without FIN is noticed within about 2 minutes."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)

    def has_capability(self, name: str) -> bool:
        return name.upper() in self._caps

    async def login(self, username: str, password: str) -> None:
        if self.has_capability("LOGINDISABLED"):
            raise ConfigurationError("server refuses LOGIN on this connection (LOGINDISABLED)")
        result = await self._wait(self._send("LOGIN", username, password), "LOGIN")
        if result.status == "NO":
            # The server's text (e.g. [AUTHENTICATIONFAILED]) is safe: it never echoes the password.
            raise AuthenticationFailed(f"login rejected for {username}: {result.text_str()}")
        self._check(result, "LOGIN")
        await self._refresh_capabilities(result)

    async def authenticate(
        self, mechanism: str, initial_response: bytes, *, final: bytes, username: str
    ) -> None:
        """SASL AUTHENTICATE (RFC 3501 6.2.2) with an initial response (RFC 4959 when offered).

        `final` answers an error challenge (XOAUTH2: empty; OAUTHBEARER: %x01) so the server
        completes with NO instead of waiting. Raises TokenRejected for a rejected bearer token,
        AuthenticationFailed for other rejections.
        """
        if not self.has_capability(f"AUTH={mechanism}"):
            raise ConfigurationError(f"server does not offer AUTH={mechanism}")
        ir = base64.b64encode(initial_response)
        with_ir = self.has_capability("SASL-IR")
        to_send = [] if with_ir else [ir]
        challenges: list[bytes] = []
        final_b64 = base64.b64encode(final)

        def on_continue(text: bytes) -> None:
            assert self.transport is not None
            if to_send:
                self.transport.write(to_send.pop(0) + b"\r\n")
            else:
                challenges.append(text.strip()[: limits.MAX_HEADER_BYTES])
                self.transport.write(final_b64 + b"\r\n")

        args: tuple[bytes, ...] = (mechanism.encode("ascii"),) + ((ir,) if with_ir else ())
        p = self._send("AUTHENTICATE", *args, collect=False, on_continue=on_continue)
        result = await self._wait(p, "AUTHENTICATE")
        if result.status == "OK":
            await self._refresh_capabilities(result)
            return
        detail = _sasl_error(challenges[-1] if challenges else None)
        reason = f"{mechanism} rejected for {username}: {result.text_str()}"
        reason += f" ({detail})" if detail else ""
        if mechanism in ("XOAUTH2", "OAUTHBEARER"):
            raise TokenRejected(reason)
        raise AuthenticationFailed(reason)

    async def select(self, folder: str) -> FolderStatus:
        result = await self._run("SELECT", encode_mailbox(folder))
        if result.status == "NO":
            raise ConfigurationError(f"cannot select folder {folder!r}")
        return parse_select([*self._check(result, "SELECT"), result.text])

    def _send_fetch(self, last_uid: int, prefix: bytes = b"") -> _Pending:
        self._exists = False
        return self._send("UID FETCH", b"%d:*" % (last_uid + 1), FETCH_ITEMS, prefix=prefix)

    async def fetch_after(self, last_uid: int) -> list[FetchedMessage]:
        """Messages with UID > last_uid, at most `limits.FETCH_BATCH`, in UID order."""
        pre, self._prefetch = self._prefetch, None
        p = pre[1] if pre is not None and pre[0] == last_uid else self._send_fetch(last_uid)
        result = await self._wait(p, "UID FETCH")
        # `N:*` returns the highest message even when its UID < N (RFC 3501): filter.
        messages = sorted(
            (m for m in parse_fetch(self._check(result, "UID FETCH")) if m.uid > last_uid),
            key=lambda m: m.uid,
        )
        return messages[: limits.FETCH_BATCH]

    def exists_pending(self) -> bool:
        return self._exists

    async def idle(
        self, *, renew_after: float, heartbeat: float, then_fetch_after: int | None = None
    ) -> str:
        """IDLE until new mail, `renew_after` seconds, or silence longer than `heartbeat`.

        Returns "exists" or "renew". Raises ConnectionLost when the server vanished. With
        `then_fetch_after`, new mail ends IDLE with DONE and `UID FETCH n+1:*` in one write; the
        next `fetch_after(n)` returns its answer (one round trip less per new mail).
        """
        if self._exists:
            return "exists"
        if not self.has_capability("IDLE"):
            raise ConfigurationError("server has no IDLE capability")
        p = await self._start_idle()
        outcome = "renew"
        try:
            deadline = time.monotonic() + renew_after
            while True:
                if self._lost is not None:
                    raise ConnectionLost(f"IDLE: {self._lost}")
                if self._exists:
                    outcome = "exists"
                    break
                now = time.monotonic()
                silent = now - self.last_rx
                if now >= deadline or silent > heartbeat:
                    # Renewal, or silence: end IDLE; the server must answer DONE, or it is gone.
                    break
                await self._sleep(min(deadline - now, heartbeat - silent) + 0.01)
        except BaseException:
            self._end_idle()
            raise
        if outcome == "exists" and then_fetch_after is not None:
            self._idle_tag = None
            self._prefetch = (then_fetch_after, self._send_fetch(then_fetch_after, b"DONE\r\n"))
        else:
            self._end_idle()
        self._check(await self._wait(p, "DONE"), "IDLE")
        return outcome

    async def _start_idle(self) -> _Pending:
        """Send IDLE and wait for its `+` (or its tagged answer: NO/BAD) within the timeout.

        A method of its own so that nothing of the start-up outlives it while idle.
        """
        started: asyncio.Future[bool] = self._loop.create_future()

        def on_continue(_: bytes) -> None:
            _settle(started, True)

        p = self._send("IDLE", collect=False, on_continue=on_continue)
        self._idle_tag = p.tag
        try:
            await self._started(started, p)
        except BaseException:
            self._end_idle()
            raise
        return p

    async def _started(self, started: asyncio.Future[bool], p: _Pending) -> None:
        timer = self._loop.call_later(self._timeout, _settle, started, False)
        try:
            await asyncio.wait((started, p.future), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        ok = started.done() and not started.cancelled() and started.result()
        started.cancel()
        if p.future.done():
            self._idle_tag = None
            result = await self._wait(p, "IDLE")
            raise CommandFailed(f"IDLE failed: {result.status} {result.text_str()}")
        p.on_continue = None
        if self._lost is not None:
            raise ConnectionLost(f"IDLE: {self._lost}")
        if not ok:
            self._idle_tag = None
            self._fail(f"IDLE: no answer within {self._timeout:g}s")
            raise ConnectionLost(f"IDLE: no answer within {self._timeout:g}s")

    async def _sleep(self, seconds: float) -> None:
        """Sleep until EXISTS, connection loss or `seconds`: one future and one timer, no task."""
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(max(seconds, 0.01), _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _end_idle(self) -> None:
        tag, self._idle_tag = self._idle_tag, None
        if tag is not None and self.transport is not None and self._lost is None:
            self.transport.write(b"DONE\r\n")

    async def noop(self) -> None:
        self._check(await self._run("NOOP"), "NOOP")

    async def logout(self) -> None:
        try:
            self._end_idle()
            await self._run("LOGOUT", timeout=5.0)
        except Exception:  # closing: a broken connection may fail in any way
            pass
        self.abort()

    def abort(self) -> None:
        if self._lost is None:
            self._lost = "closed by idlewire"
        if self.transport is not None:
            self.transport.abort()


def _drop_peercert(transport: asyncio.BaseTransport) -> None:
    """Forget asyncio's decoded copy of the server certificate (~1.4 KiB per connection).

    asyncio caches `getpeercert()` as a dict in the TLS transport's extra info for the whole
    connection; nothing here reads it after the handshake verified it (OpenSSL keeps its own
    copy). Private attribute, so only ever a best effort (docs/benchmarks.md).
    """
    extra = getattr(getattr(transport, "_ssl_protocol", None), "_extra", None)
    if isinstance(extra, dict):
        extra.pop("peercert", None)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:200]


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
