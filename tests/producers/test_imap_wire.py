"""The sans-IO IMAP wire format: cutting a byte stream into responses, building commands."""

from __future__ import annotations

import base64
import re
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers import imap_wire, limits
from producers.errors import ProtocolError
from producers.imap_wire import Response, ResponseReader, command, encode_mailbox

HDR = (
    b"Message-ID: <r-1@hotel.test>\r\nFrom: Guest <g@x.de>\r\n"
    b"Subject: {12}\r\n odd\r\nDate: Tue, 24 Nov 2026 03:59:58 +0100\r\n\r\n"
)
FETCH_FIRST = (
    b'* 3 FETCH (UID 12 RFC822.SIZE 312 INTERNALDATE "04-Nov-2026 03:01:02 +0100" '
    b"BODY[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)] {%d}" % len(HDR)
)
TRANSCRIPT = (
    b"* OK [CAPABILITY IMAP4rev1 IDLE LITERAL+ SASL-IR AUTH=PLAIN] Dovecot ready.\r\n"
    b"A1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n"
    b"* FLAGS (\\Answered \\Seen)\r\n"
    b"* 3 EXISTS\r\n"
    b"* OK [UIDVALIDITY 1732] UIDs valid\r\n"
    b"A2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"
    + FETCH_FIRST
    + b"\r\n"
    + HDR
    + b")\r\n"
    b"A3 OK Fetch completed.\r\n"
    b"+ idling\r\n"
    b"* 4 EXISTS\r\n"
)
EXPECTED = [
    Response(
        b"*",
        "OK",
        b"[CAPABILITY IMAP4rev1 IDLE LITERAL+ SASL-IR AUTH=PLAIN] Dovecot ready.",
        (b"OK [CAPABILITY IMAP4rev1 IDLE LITERAL+ SASL-IR AUTH=PLAIN] Dovecot ready.",),
    ),
    Response(
        b"A1",
        "OK",
        b"[CAPABILITY IMAP4rev1 IDLE MOVE] Logged in",
        (b"OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in",),
    ),
    Response(b"*", "", b"FLAGS (\\Answered \\Seen)", (b"FLAGS (\\Answered \\Seen)",)),
    Response(b"*", "", b"3 EXISTS", (b"3 EXISTS",)),
    Response(b"*", "OK", b"[UIDVALIDITY 1732] UIDs valid", (b"OK [UIDVALIDITY 1732] UIDs valid",)),
    Response(
        b"A2",
        "OK",
        b"[READ-WRITE] Select completed (0.001 + 0.000 secs).",
        (b"OK [READ-WRITE] Select completed (0.001 + 0.000 secs).",),
    ),
    Response(b"*", "", FETCH_FIRST[2:], (FETCH_FIRST[2:], HDR, b")")),
    Response(b"A3", "OK", b"Fetch completed.", (b"OK Fetch completed.",)),
    Response(b"+", "", b"idling", (b"+ idling",)),
    Response(b"*", "", b"4 EXISTS", (b"4 EXISTS",)),
]


def feed_pieces(data: bytes, cuts: list[int], **caps: int) -> list[Response]:
    reader = ResponseReader(**caps)
    out: list[Response] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        out += reader.feed(data[start:cut])
        start = cut
    assert reader.buffered == 0
    return out


# ---- cutting the stream -----------------------------------------------------------------------


def test_transcript_in_one_feed():
    assert ResponseReader().feed(TRANSCRIPT) == EXPECTED


def test_transcript_split_at_every_single_boundary():
    for cut in range(len(TRANSCRIPT) + 1):
        assert feed_pieces(TRANSCRIPT, [cut]) == EXPECTED, cut


def test_transcript_byte_by_byte():
    reader = ResponseReader()
    out = [r for i in range(len(TRANSCRIPT)) for r in reader.feed(TRANSCRIPT[i : i + 1])]
    assert out == EXPECTED
    assert reader.buffered == 0


@given(st.lists(st.integers(0, len(TRANSCRIPT)), max_size=30))
def test_transcript_split_anywhere(cuts):
    assert feed_pieces(TRANSCRIPT, cuts) == EXPECTED


def test_incomplete_response_is_buffered_until_complete():
    reader = ResponseReader()
    assert reader.feed(b"* 3 FETCH (BODY[] {5}\r\nab") == []
    assert reader.buffered == 2
    assert reader.feed(b"cde") == []  # literal done, closing line still missing
    [r] = reader.feed(b")\r\n* 4 EX")
    assert r.lines == (b"3 FETCH (BODY[] {5}", b"abcde", b")")
    assert reader.buffered == len(b"* 4 EX")
    [r] = reader.feed(b"ISTS\r\n")
    assert r.exists == 4
    assert reader.buffered == 0


def test_literal_content_is_opaque():
    literal = b"a\r\n* BYE {3}\r\nA1 OK"
    data = b"* 1 FETCH (BODY[] {%d}\r\n" % len(literal) + literal + b")\r\n"
    [r] = ResponseReader().feed(data)
    assert r.lines == (b"1 FETCH (BODY[] {%d}" % len(literal), literal, b")")


def test_non_synchronizing_literal_marker():
    [r] = ResponseReader().feed(b"* 1 FETCH (BODY[] {3+}\r\nabc)\r\n")
    assert r.lines == (b"1 FETCH (BODY[] {3+}", b"abc", b")")


def test_several_literals_and_empty_literal_in_one_response():
    data = b"* 1 FETCH (A {2}\r\nxy B {0}\r\n C {1}\r\nz)\r\nA1 OK done\r\n"
    r, tagged = ResponseReader().feed(data)
    assert r.lines == (b"1 FETCH (A {2}", b"xy", b" B {0}", b"", b" C {1}", b"z", b")")
    assert (tagged.tag, tagged.status) == (b"A1", "OK")


def test_braces_not_at_line_end_are_no_literal():
    [r] = ResponseReader().feed(b"* OK {3} said the server\r\n")
    assert r.lines == (b"OK {3} said the server",)


# ---- status and tags --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "tag", "status", "text"),
    [
        (b"A7 OK done", b"A7", "OK", b"done"),
        (b"a7 ok done", b"a7", "OK", b"done"),
        (b"A7 NO [AUTHENTICATIONFAILED] nope", b"A7", "NO", b"[AUTHENTICATIONFAILED] nope"),
        (b"A7 BAD", b"A7", "BAD", b""),
        (b"* BYE Server shutting down", b"*", "BYE", b"Server shutting down"),
        (b"* PREAUTH welcome", b"*", "PREAUTH", b"welcome"),
        (b"* OK Still here", b"*", "OK", b"Still here"),
        (b"* 12 EXPUNGE", b"*", "", b"12 EXPUNGE"),
        (b"+", b"+", "", b""),
        (b"+ ", b"+", "", b""),
        (b"+ eyJzIjoxfQ==", b"+", "", b"eyJzIjoxfQ=="),
    ],
)
def test_status_and_text(line, tag, status, text):
    [r] = ResponseReader().feed(line + b"\r\n")
    assert (r.tag, r.status, r.text) == (tag, status, text)


@pytest.mark.parametrize("line", [b"A1 OKAY fine", b"A1 FETCH (UID 1)", b"A1", b"", b"A1 "])
def test_tagged_response_without_status_is_a_protocol_error(line):
    with pytest.raises(ProtocolError):
        ResponseReader().feed(line + b"\r\n")


# ---- caps -------------------------------------------------------------------------------------


def test_line_at_the_cap_is_accepted():
    [r] = ResponseReader(max_line=10).feed(b"* 34567890\r\n")
    assert r.text == b"34567890"


def test_oversized_line_without_crlf_yet():
    reader = ResponseReader(max_line=10)
    assert reader.feed(b"* 34567890") == []  # at the cap: still waiting
    with pytest.raises(ProtocolError):
        reader.feed(b"1")


def test_oversized_line_with_crlf():
    with pytest.raises(ProtocolError):
        ResponseReader(max_line=10).feed(b"* 345678901\r\n")


def test_oversized_line_after_complete_responses():
    with pytest.raises(ProtocolError):
        ResponseReader(max_line=10).feed(b"* 1 EXISTS\r\n* 34567890123")


def test_default_line_cap_is_limits_max_line_bytes():
    reader = ResponseReader()
    assert reader.feed(b"* " + b"x" * (limits.MAX_LINE_BYTES - 2)) == []
    with pytest.raises(ProtocolError):
        reader.feed(b"x")


def test_line_at_the_cap_split_between_cr_and_lf():
    reader = ResponseReader(max_line=10)
    assert reader.feed(b"* 34567890\r") == []
    [r] = reader.feed(b"\n")
    assert r.text == b"34567890"


def test_literal_at_the_cap_is_accepted():
    [r] = ResponseReader(max_literal=5).feed(b"* 1 FETCH (BODY[] {5}\r\nabcde)\r\n")
    assert r.lines[1] == b"abcde"


def test_oversized_literal_is_rejected_before_its_data():
    with pytest.raises(ProtocolError):
        ResponseReader(max_literal=5).feed(b"* 1 FETCH (BODY[] {6}\r\n")
    with pytest.raises(ProtocolError):
        ResponseReader().feed(b"* 1 FETCH (BODY[] {%d}\r\n" % (limits.MAX_LITERAL_BYTES + 1))


def test_huge_literal_announcement_is_rejected():
    with pytest.raises(ProtocolError):
        ResponseReader().feed(b"* 1 FETCH (BODY[] {999999999999}\r\n")


def test_one_response_made_of_endless_literals_is_capped():
    reader = ResponseReader(max_line=64, max_literal=64, max_response=64 * 1024)
    reader.feed(b"* 1 FETCH (A {3}\r\n")
    with pytest.raises(ProtocolError):
        for _ in range(100_000):  # ~1.1 MB in one never-ending response
            reader.feed(b"xyz A {3}\r\n")


FRAGMENTS = [
    b"\r\n",
    b"\r",
    b"\n",
    b"* ",
    b"+ ",
    b"A1 OK ",
    b"A1 ",
    b"{3}\r\n",
    b"{0}\r\n",
    b"{7+}\r\n",
    b"{99}\r\n",
    b"{",
    b"}",
    b"OK [CAPABILITY IMAP4rev1 IDLE]",
    b"CAPABILITY ",
    b"3 EXISTS",
]


@given(
    st.lists(st.one_of(st.binary(max_size=24), st.sampled_from(FRAGMENTS)), max_size=40),
    st.integers(1, 24),
    st.integers(0, 12),
)
def test_feed_on_garbage_raises_only_protocol_error_and_stays_within_caps(
    chunks, max_line, max_literal
):
    reader = ResponseReader(max_line=max_line, max_literal=max_literal)
    # capabilities() remembers lists in a module-wide cache: keep garbage out of the real one
    with mock.patch.object(imap_wire, "_capability_sets", {}):
        try:
            for chunk in chunks:
                for r in reader.feed(chunk):
                    assert r.tag and r.lines
                    _ = r.exists, r.capabilities()
                # (+1: the CR of a CRLF split across reads)
                assert reader.buffered <= max(max_line + 1, max_literal)
        except ProtocolError:
            pass


# ---- response accessors -----------------------------------------------------------------------


def one(line: bytes) -> Response:
    [r] = ResponseReader().feed(line + b"\r\n")
    return r


def test_exists():
    assert one(b"* 3 EXISTS").exists == 3
    assert one(b"* 0 exists").exists == 0
    assert one(b"* 3 RECENT").exists is None
    assert one(b"* OK 3 EXISTS").exists is None
    assert one(b"A1 OK 3 EXISTS").exists is None
    assert one(b"+ 3 EXISTS").exists is None


def test_capabilities_from_untagged_capability():
    caps = one(b"* CAPABILITY IMAP4rev1 idle LITERAL+ AUTH=XOAUTH2").capabilities()
    assert caps == frozenset({"IMAP4REV1", "IDLE", "LITERAL+", "AUTH=XOAUTH2"})


def test_capabilities_from_response_codes():
    assert one(b"A1 OK [CAPABILITY IMAP4rev1 MOVE] Logged in").capabilities() == frozenset(
        {"IMAP4REV1", "MOVE"}
    )
    assert one(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready").capabilities() == frozenset(
        {"IMAP4REV1", "IDLE"}
    )


@pytest.mark.parametrize(
    "line", [b"* 3 EXISTS", b"A1 OK Logged in", b"+ [CAPABILITY X]", b"* FLAGS (CAPABILITY)"]
)
def test_no_capabilities(line):
    assert one(line).capabilities() is None


def test_identical_capability_lists_share_one_object(monkeypatch):
    monkeypatch.setattr(imap_wire, "_capability_sets", {})
    a = ResponseReader().feed(b"* CAPABILITY IMAP4rev1 IDLE SASL-IR\r\n")[0].capabilities()
    b = ResponseReader().feed(b"A1 OK [CAPABILITY imap4rev1 IDLE SASL-IR ] hi\r\n")[0]
    c = imap_wire.parse_capabilities(b"IMAP4rev1 IDLE MOVE")
    assert a is b.capabilities()
    assert a is not c and a != c


def test_capability_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(imap_wire, "_capability_sets", {})
    monkeypatch.setattr(limits, "MAX_CAPABILITY_SETS", 2)
    for name in (b"A", b"B", b"C", b"D"):
        assert imap_wire.parse_capabilities(b"IMAP4rev1 " + name) == {"IMAP4REV1", name.decode()}
    assert len(imap_wire._capability_sets) == 2
    assert imap_wire.parse_capabilities(b"IMAP4rev1 A") is imap_wire.parse_capabilities(
        b"IMAP4rev1 A"
    )


# ---- commands ---------------------------------------------------------------------------------


def test_command_without_arguments():
    assert command(b"A1", "NOOP") == [b"A1 NOOP\r\n"]


def test_bytes_arguments_go_out_raw():
    assert command(b"A2", "UID FETCH", b"5:*", b"(UID BODY.PEEK[HEADER])") == [
        b"A2 UID FETCH 5:* (UID BODY.PEEK[HEADER])\r\n"
    ]


def test_strings_are_quoted_with_escapes():
    assert command(b"A1", "LOGIN", "user@x.de", 'pa"ss\\word', "") == [
        b'A1 LOGIN "user@x.de" "pa\\"ss\\\\word" ""\r\n'
    ]


@pytest.mark.parametrize("value", ["pässwort", "line\r\nbreak", "cr\ronly", "lf\nonly", "nul\0"])
def test_unquotable_strings_become_literals(value):
    raw = value.encode()
    assert command(b"A1", "LOGIN", "u", value, literal_plus=True) == [
        b'A1 LOGIN "u" {%d+}\r\n' % len(raw) + raw + b"\r\n"
    ]
    assert command(b"A1", "LOGIN", "u", value) == [
        b'A1 LOGIN "u" {%d}\r\n' % len(raw),
        raw + b"\r\n",
    ]


def test_several_synchronizing_literals():
    assert command(b"A3", "LOGIN", "ü", "ß") == [
        b"A3 LOGIN {2}\r\n",
        b"\xc3\xbc {2}\r\n",
        b"\xc3\x9f\r\n",
    ]
    assert command(b"A3", "LOGIN", "ü", "ß", literal_plus=True) == [
        b"A3 LOGIN {2+}\r\n\xc3\xbc {2+}\r\n\xc3\x9f\r\n"
    ]


# ---- mailbox names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
        ("台北日本語", "&U,BTF2XlZyyKng-"),  # one run, never "&U,BTFw-&ZeVnLIqe-"
        ("&", "&-"),
        ("a&b", "a&-b"),
        ("☺!", "&Jjo-!"),  # RFC 3501: "&Jjo!" is illegal
        ("Entwürfe", "Entw&APw-rfe"),
        ("Gesendete Objekte", "Gesendete Objekte"),
        ("😀", "&2D3eAA-"),  # outside the BMP: a UTF-16 surrogate pair
        ("tab\there", "tab&AAk-here"),
    ],
)
def test_encode_mailbox(name, encoded):
    assert encode_mailbox(name) == encoded


def decode_mailbox(encoded: str) -> str:
    def run(m: re.Match[str]) -> str:
        b64 = m.group(1)
        if not b64:
            return "&"
        b64 = b64.replace(",", "/")
        return base64.b64decode(b64 + "=" * (-len(b64) % 4)).decode("utf-16-be")

    return re.sub(r"&([A-Za-z0-9+,]*)-", run, encoded)


@given(st.text())
def test_encode_mailbox_round_trips_and_is_printable_ascii(name):
    encoded = encode_mailbox(name)
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert decode_mailbox(encoded) == name
