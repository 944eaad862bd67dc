"""A raw IMAPS `AUTHENTICATE` exchange, byte for byte, for checking what Dovecot answers to a token.

No IMAP library: aioimaplib's xoauth2() never answers the server's error challenge (it hangs on a
rejected token) and imaplib hides the continuation lines this test wants to see.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

_MAX_LINE = 64 * 1024


def xoauth2(user: str, token: str) -> bytes:
    """Google's XOAUTH2 initial response (before base64)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str, host: str, port: int) -> bytes:
    """RFC 7628 §3.1 initial client response: GS2 header, then host, port and auth key/values."""
    return f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


# What a client sends after a SASL error challenge so that the server finishes with NO:
# XOAUTH2 (Google's convention) an empty response, OAUTHBEARER (RFC 7628 §3.2.3) a single %x01.
ERROR_ACK = {"XOAUTH2": b"", "OAUTHBEARER": b"\x01"}


@dataclass
class Outcome:
    ok: bool
    tagged: bytes  # the tagged completion line, e.g. b"A1 NO [AUTHENTICATIONFAILED] ..."
    challenges: list[dict[str, Any]] = field(default_factory=list)  # decoded `+ ` JSON payloads
    raw_continuations: list[bytes] = field(default_factory=list)
    sent_after_challenge: list[bytes] = field(default_factory=list)
    seconds: float = 0.0  # from sending AUTHENTICATE to the tagged reply


def authenticate(
    mechanism: str,
    initial_response: bytes,
    *,
    host: str,
    port: int,
    cafile: str,
    timeout: float = 20.0,
) -> Outcome:
    ctx = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        reader = tls.makefile("rb")

        def line() -> bytes:
            data = reader.readline(_MAX_LINE)
            if not data.endswith(b"\r\n"):
                raise ConnectionError(f"connection closed or line too long: {data[:200]!r}")
            return data[:-2]

        greeting = line()
        assert greeting.startswith(b"* OK"), greeting
        # SASL-IR (RFC 4959): the initial response rides on the command line, as Gmail clients do.
        ir = base64.b64encode(initial_response)
        started = time.monotonic()
        tls.sendall(b"A1 AUTHENTICATE " + mechanism.encode() + b" " + ir + b"\r\n")
        outcome = Outcome(ok=False, tagged=b"")
        while True:
            reply = line()
            if reply.startswith(b"+"):
                payload = reply[1:].strip()
                outcome.raw_continuations.append(reply)
                outcome.challenges.append(json.loads(base64.b64decode(payload)))
                ack = base64.b64encode(ERROR_ACK[mechanism.upper()])
                outcome.sent_after_challenge.append(ack)
                tls.sendall(ack + b"\r\n")
            elif reply.startswith(b"A1 "):
                outcome.seconds = time.monotonic() - started
                outcome.tagged = reply
                outcome.ok = reply.startswith(b"A1 OK")
                break
        if outcome.ok:
            tls.sendall(b"A2 SELECT INBOX\r\n")
            while not (reply := line()).startswith(b"A2 "):
                pass
            assert reply.startswith(b"A2 OK"), reply
        tls.sendall(b"A9 LOGOUT\r\n")
        return outcome
