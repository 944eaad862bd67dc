"""IMAP4rev1 client wire format without I/O (sans-IO, like h11): bytes in, responses out.

`ResponseReader.feed(data)` cuts what the server sends into complete responses (a line, plus
any literals it announces with `{N}` and the lines that follow them), enforcing the caps of
`limits`. The `command()` builder encodes a tagged command with its arguments as atoms, quoted
strings or literals. The edge (`producers._imap`) owns the socket and drives both.

A response's `lines` is the shape the parsers in `imap_responses` read: the first line without
its `* ` or tag, then each literal and each continuation line as separate items.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from producers import limits
from producers.errors import ProtocolError

_LITERAL_AT_END = re.compile(rb"\{(\d{1,12})\+?\}$")
_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_EXISTS = re.compile(rb"^(\d+) EXISTS$", re.IGNORECASE)
_STATUS = re.compile(rb"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: (.*))?$", re.DOTALL | re.IGNORECASE)

UNTAGGED = b"*"
CONTINUATION = b"+"


@dataclass(frozen=True, slots=True)
class Response:
    """One server response. `tag` is the command's tag, `*` (untagged) or `+` (continuation).

    `status` is OK/NO/BAD/BYE/PREAUTH for status responses, else "". `text` is what follows the
    status (or the whole first line of a data response like `3 EXISTS`).
    """

    tag: bytes
    status: str
    text: bytes
    lines: tuple[bytes, ...]

    @property
    def exists(self) -> int | None:
        """N of an untagged `* N EXISTS`, else None."""
        if self.tag != UNTAGGED:
            return None
        m = _EXISTS.match(self.lines[0])
        return int(m.group(1)) if m else None

    def capabilities(self) -> frozenset[str] | None:
        """Capabilities from `* CAPABILITY …` or a `[CAPABILITY …]` response code, else None."""
        first = self.lines[0]
        if self.tag == UNTAGGED and first[:11].upper() == b"CAPABILITY ":
            return parse_capabilities(first[11:])
        if self.status and (m := _CAPABILITY_CODE.search(self.text)):
            return parse_capabilities(m.group(1))
        return None


_capability_sets: dict[bytes, frozenset[str]] = {}


def parse_capabilities(raw: bytes) -> frozenset[str]:
    """Upper-cased capability names. Identical lists share one frozenset: every connection to
    the same server announces the same ~30 names (4 KiB per connection when kept separately)."""
    key = raw.strip().upper()
    caps = _capability_sets.get(key)
    if caps is None:
        caps = frozenset(key.decode("ascii", "replace").split())
        if len(_capability_sets) < limits.MAX_CAPABILITY_SETS:
            _capability_sets[key] = caps
    return caps


def _response(parts: list[bytes]) -> Response:
    first = parts[0]
    if first[:1] == CONTINUATION:
        return Response(CONTINUATION, "", first[2:] if first[1:2] == b" " else first[1:], (first,))
    tag, sep, rest = first.partition(b" ")
    if not sep and tag != UNTAGGED:
        raise ProtocolError("malformed server response (no tag separator)")
    m = _STATUS.match(first)
    if m:
        status, text = m.group(2).decode().upper(), m.group(3) or b""
    elif tag == UNTAGGED:
        status, text = "", rest
    else:
        raise ProtocolError("malformed tagged response (no OK, NO or BAD)")
    return Response(tag, status, text, (rest, *parts[1:]))


class ResponseReader:
    """Cuts a byte stream into responses. Holds at most one line or literal of the caps."""

    __slots__ = ("_buf", "_max_line", "_max_literal", "_max_response", "_need", "_parts", "_size")

    def __init__(
        self,
        max_line: int = limits.MAX_LINE_BYTES,
        max_literal: int = limits.MAX_LITERAL_BYTES,
        max_response: int = limits.MAX_COMMAND_RESPONSE_BYTES,
    ) -> None:
        self._buf: bytearray | None = None  # only while a response is incomplete
        self._parts: list[bytes] | None = None
        self._need = -1  # bytes of a literal still to come; -1: reading a line
        self._max_line = max_line
        self._max_literal = max_literal
        self._max_response = max_response
        self._size = 0  # bytes of the response in progress (lines and literals chained)

    @property
    def buffered(self) -> int:
        return len(self._buf) if self._buf is not None else 0

    def feed(self, data: bytes) -> list[Response]:
        """Complete responses in `data` (plus what was buffered). Raises ProtocolError when a
        line or literal exceeds the caps; the stream is unusable afterwards."""
        if self._buf is None:
            buf = bytearray(data)
        else:
            buf = self._buf
            buf += data
        out: list[Response] = []
        pos = 0
        while True:
            if self._need >= 0:
                if len(buf) - pos < self._need:
                    break
                assert self._parts is not None
                self._parts.append(bytes(buf[pos : pos + self._need]))
                pos += self._need
                self._need = -1
                continue
            # A line's CRLF may be split across reads: never search more than one byte back.
            end = buf.find(b"\r\n", max(pos, len(buf) - len(data) - 1))
            if end < 0:
                if len(buf) - pos - buf.endswith(b"\r") > self._max_line:
                    raise ProtocolError("server response line exceeds the size limit")
                break
            if end - pos > self._max_line:
                raise ProtocolError("server response line exceeds the size limit")
            line = bytes(buf[pos:end])
            pos = end + 2
            self._size += len(line)
            if self._parts is None:
                self._parts = [line]
            else:
                self._parts.append(line)
            if m := _LITERAL_AT_END.search(line):
                size = int(m.group(1))
                if size > self._max_literal:
                    raise ProtocolError("server literal exceeds the size limit")
                self._size += size
                if self._size > self._max_response:
                    raise ProtocolError("server response exceeds the size limit")
                self._need = size
                continue
            parts, self._parts, self._size = self._parts, None, 0
            out.append(_response(parts))
        if pos >= len(buf):
            self._buf = None
        else:
            del buf[:pos]
            self._buf = buf
        return out


# ---- commands ------------------------------------------------------------------------------


def _quotable(value: bytes) -> bool:
    return value.isascii() and not any(c in value for c in (b"\r", b"\n", b"\0"))


def command(tag: bytes, name: str, *args: str | bytes, literal_plus: bool = False) -> list[bytes]:
    """The bytes of a tagged command, split where a synchronizing literal needs the server's `+`.

    `bytes` arguments go out as they are (atoms, sequence sets, fetch items); `str` arguments
    are strings: quoted when possible, else a literal (LITERAL+ when the server offers it).
    Every chunk after the first is sent only after a continuation request.
    """
    chunks: list[bytes] = []
    cur = tag + b" " + name.encode("ascii")
    for arg in args:
        if isinstance(arg, bytes):
            cur += b" " + arg
            continue
        raw = arg.encode("utf-8")
        if _quotable(raw):
            cur += b' "' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        elif literal_plus:
            cur += b" {%d+}\r\n" % len(raw) + raw
        else:
            chunks.append(cur + b" {%d}\r\n" % len(raw))
            cur = raw
    chunks.append(cur + b"\r\n")
    return chunks


def encode_mailbox(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)
