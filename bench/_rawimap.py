"""A minimal hand-written IMAP client on asyncio streams: no aioimaplib, no Kafka.

The benchmark uses it twice: as the delivery side (LOGIN, APPEND with LITERAL+ so one write and
one tagged OK, whose arrival is "delivery done") and as the latency floor (LOGIN, SELECT, IDLE,
then nothing but reading `* N EXISTS`). Just enough of RFC 3501 for those; not for production.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")


class ImapError(RuntimeError):
    pass


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RawImap:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._tag = 0

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 15.0,
    ) -> RawImap:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl_context, limit=4 * 1024 * 1024
            )
            greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            writer.close()
            raise ImapError(f"bad greeting {greeting[:100]!r}")
        return cls(reader, writer)

    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"b%d" % self._tag

    async def _read_response(self, tag: bytes) -> tuple[bytes, list[bytes]]:
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ImapError("connection closed by server")
            m = _LITERAL.search(line)
            while m:  # untagged response with a literal: read it and the rest of the line
                line += await self.reader.readexactly(int(m.group(1)))
                rest = await self.reader.readline()
                line += rest
                m = _LITERAL.search(rest)
            if line.startswith(tag + b" "):
                return line, lines
            lines.append(line)

    async def command(
        self, text: str, literal: bytes | None = None, timeout: float = 30.0
    ) -> tuple[bytes, list[bytes]]:
        tag = self._next_tag()
        if literal is None:
            self.writer.write(tag + b" " + text.encode() + b"\r\n")
        else:  # LITERAL+ (RFC 7888): no round trip for the continuation
            self.writer.write(
                tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal) + literal + b"\r\n"
            )
        async with asyncio.timeout(timeout):
            done, lines = await self._read_response(tag)
        if not done.startswith(tag + b" OK"):
            raise ImapError(f"{text.split()[0]} failed: {done[:200]!r}")
        return done, lines

    async def login(self, user: str, password: str) -> None:
        await self.command(f"LOGIN {_quote(user)} {_quote(password)}")

    async def select(self, folder: str = "INBOX") -> int:
        _, lines = await self.command(f"SELECT {_quote(folder)}")
        for line in lines:
            m = _EXISTS.match(line)
            if m:
                return int(m.group(1))
        return 0

    async def append(self, message: bytes, folder: str = "INBOX") -> tuple[int, int, float]:
        """APPEND; returns (UIDVALIDITY, UID, monotonic time the tagged OK was read)."""
        done, _ = await self.command(f"APPEND {_quote(folder)}", literal=message)
        t_ok = time.monotonic()
        m = _APPENDUID.search(done)
        if not m:
            raise ImapError(f"no APPENDUID in {done[:200]!r}")
        return int(m.group(1)), int(m.group(2)), t_ok

    async def _start_idle(self) -> bytes:
        tag = self._next_tag()
        self.writer.write(tag + b" IDLE\r\n")
        line = await self.reader.readline()
        if not line.startswith(b"+"):
            raise ImapError(f"IDLE refused: {line[:200]!r}")
        return tag

    async def idle_forever(self, on_exists: Callable[[int, float], None]) -> None:
        """IDLE and report every `* N EXISTS` with its arrival time; returns when the server
        closes the connection. Never sends DONE: the session stays hibernated between mails."""
        await self._start_idle()
        while True:
            line = await self.reader.readline()
            if not line:
                return
            m = _EXISTS.match(line)
            if m:
                on_exists(int(m.group(1)), time.monotonic())

    async def idle_fetch_forever(
        self, on_exists: Callable[[int, float], None], on_fetched: Callable[[float], None]
    ) -> None:
        """What the producer does on the wire, minimally: IDLE; on `* N EXISTS` send DONE and
        FETCH of the new message's UID and header fields in one write (pipelined); IDLE again."""
        while True:
            tag = await self._start_idle()
            while True:
                line = await self.reader.readline()
                if not line:
                    return
                m = _EXISTS.match(line)
                if m:
                    on_exists(int(m.group(1)), time.monotonic())
                    break
            ftag = self._next_tag()
            self.writer.write(
                b"DONE\r\n" + ftag + b" FETCH " + m.group(1) + b" (UID RFC822.SIZE INTERNALDATE "
                b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)])\r\n"
            )
            await self._read_response(tag)
            done, _ = await self._read_response(ftag)
            on_fetched(time.monotonic())
            if not done.startswith(ftag + b" OK"):
                raise ImapError(f"FETCH failed: {done[:200]!r}")

    async def logout(self) -> None:
        try:
            async with asyncio.timeout(5):
                await self.command("LOGOUT")
        except Exception:  # best effort: the connection is closed below anyway
            pass
        self.close()

    def close(self) -> None:
        self.writer.close()
