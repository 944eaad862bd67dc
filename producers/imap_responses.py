"""Pure parsers for the IMAP responses the producer reads (RFC 3501 syntax, no I/O).

Input is what the IMAP adapter hands over: the response lines of one command, untagged ones
without their leading `* `, with literals as separate bytes items following the line that
announced them with `{N}`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence

from producers.checkpoint import FolderStatus
from producers.errors import ProtocolError
from producers.limits import MAX_HEADER_BYTES

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS\b")
_FETCH = re.compile(rb"^(\d+) FETCH \(")
_LITERAL = re.compile(rb"\{(\d+)\}$")


def parse_select(lines: Sequence[bytes]) -> FolderStatus:
    uidvalidity = uidnext = exists = None
    for line in lines:
        if m := _UIDVALIDITY.search(line):
            uidvalidity = int(m.group(1))
        elif m := _UIDNEXT.search(line):
            uidnext = int(m.group(1))
        elif m := _EXISTS.match(line):
            exists = int(m.group(1))
    if uidvalidity is None or exists is None:
        raise ProtocolError("SELECT response lacks UIDVALIDITY or EXISTS")
    return FolderStatus(uidvalidity=uidvalidity, uidnext=uidnext, exists=exists)


def exists_counts(lines: Sequence[bytes]) -> list[int]:
    """Every `N EXISTS` among untagged lines (any command may carry one)."""
    return [int(m.group(1)) for line in lines if (m := _EXISTS.match(bytes(line)))]


@dataclasses.dataclass(frozen=True, slots=True)
class FetchedMessage:
    uid: int
    size: int
    internal_date: str | None
    header: bytes


# --- FETCH ------------------------------------------------------------------------------------
# Tokens: b"(" / b")" / atoms (bytes) / quoted strings (str) / literals (_Literal) / None (NIL).


@dataclasses.dataclass(frozen=True, slots=True)
class _Literal:
    data: bytes


Token = bytes | str | _Literal | None
Value = bytes | str | _Literal | None | list["Value"]


def _tokens(text: bytes) -> Iterator[Token]:
    i, n = 0, len(text)
    while i < n:
        c = text[i : i + 1]
        if c == b" ":
            i += 1
        elif c in (b"(", b")"):
            yield c
            i += 1
        elif c == b'"':
            out = bytearray()
            i += 1
            while i < n and text[i : i + 1] != b'"':
                if text[i : i + 1] == b"\\":
                    i += 1
                out += text[i : i + 1]
                i += 1
            if i >= n:
                raise ProtocolError("unterminated quoted string in FETCH response")
            i += 1
            yield out.decode("utf-8", "replace")
        else:
            start, depth = i, 0
            while i < n:
                ch = text[i : i + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")"):
                    break
                i += 1
            atom = text[start:i]
            yield None if atom.upper() == b"NIL" else atom


def _fetch_tokens(first: bytes, rest: Iterator[bytes]) -> Iterator[Token]:
    """Tokens of one FETCH response that may span several lines joined by literals."""
    line = first
    while True:
        m = _LITERAL.search(line)
        yield from _tokens(line[: m.start()] if m else line)
        if not m:
            return
        literal = next(rest, None)
        if literal is None or len(literal) != int(m.group(1)):
            raise ProtocolError("FETCH literal missing or of the wrong size")
        yield _Literal(bytes(literal[:MAX_HEADER_BYTES]))
        line = bytes(next(rest, b""))


def _parse_list(tokens: Iterator[Token]) -> list[Value]:
    items: list[Value] = []
    for tok in tokens:
        if tok == b")":
            return items
        items.append(_parse_list(tokens) if tok == b"(" else tok)
    raise ProtocolError("unbalanced parentheses in FETCH response")


def parse_fetch(lines: Sequence[bytes]) -> list[FetchedMessage]:
    """Messages of a `UID FETCH … (UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS …])`."""
    out: list[FetchedMessage] = []
    items = iter(lines)
    for line in items:
        m = _FETCH.match(bytes(line))
        if not m:
            continue
        tokens = _fetch_tokens(bytes(line)[m.end() :], (bytes(x) for x in items))
        attrs = _parse_list(tokens)
        fields: dict[str, Value] = {}
        for name, value in zip(attrs[::2], attrs[1::2], strict=False):
            if isinstance(name, bytes):
                fields[name.decode("ascii", "replace").upper()] = value
        uid, size = fields.get("UID"), fields.get("RFC822.SIZE")
        if not isinstance(uid, bytes) or not uid.isdigit():
            continue  # an unsolicited FETCH (flag change) without UID: not ours
        header = next((v for k, v in fields.items() if k.startswith("BODY[")), None)
        internal = fields.get("INTERNALDATE")
        out.append(
            FetchedMessage(
                uid=int(uid),
                size=int(size) if isinstance(size, bytes) and size.isdigit() else 0,
                internal_date=internal if isinstance(internal, str) else None,
                header=header.data
                if isinstance(header, _Literal)
                else (header.encode() if isinstance(header, str) else b""),
            )
        )
    return out
