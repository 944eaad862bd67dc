"""Parsing what IMAP servers send, including hostile and odd responses."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.errors import ProtocolError
from producers.imap_responses import exists_counts, parse_fetch, parse_select
from producers.mail import new_mail_event, parse_internaldate

HDR = (
    b"Message-ID: <r-1@hotel.test>\r\nFrom: =?utf-8?q?J=C3=BCrgen?= <j@x.de>\r\n"
    b"Subject: Booking\r\n for two\r\nDate: Tue, 24 Nov 2026 03:59:58 +0100\r\n\r\n"
)


def fetch_lines(uid=5, header=HDR, order="uid-first"):
    lit = f"BODY[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)] {{{len(header)}}}".encode()
    if order == "uid-first":
        first = b'1 FETCH (UID %d RFC822.SIZE 312 INTERNALDATE " 4-Nov-2026 03:01:02 +0100" ' % uid
        return [first + lit, bytearray(header), b")"]
    first = b"1 FETCH (RFC822.SIZE 312 " + lit
    return [first, bytearray(header), b' INTERNALDATE "04-Nov-2026 03:01:02 +0100" UID %d)' % uid]


def test_select():
    st_ = parse_select(
        [
            b"FLAGS (\\Seen)",
            b"3 EXISTS",
            b"0 RECENT",
            b"OK [UIDVALIDITY 1732] UIDs valid",
            b"OK [UIDNEXT 9] Predicted",
            b"[READ-WRITE] Select completed",
        ]
    )
    assert (st_.uidvalidity, st_.uidnext, st_.exists) == (1732, 9, 3)


def test_select_without_uidvalidity_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        parse_select([b"3 EXISTS"])


@pytest.mark.parametrize("order", ["uid-first", "literal-first"])
def test_fetch_any_attribute_order(order):
    [m] = parse_fetch(fetch_lines(order=order))
    assert (m.uid, m.size, m.internal_date) == (5, 312, m.internal_date)
    assert m.header == HDR
    assert parse_internaldate(m.internal_date) == datetime(2026, 11, 4, 2, 1, 2, tzinfo=UTC)


def test_fetch_several_and_unsolicited_flag_updates():
    lines = [
        *fetch_lines(uid=5),
        b"2 FETCH (FLAGS (\\Seen))",
        *fetch_lines(uid=6),
        b"Fetch completed.",
    ]
    assert [m.uid for m in parse_fetch(lines)] == [5, 6]


def test_fetch_literal_of_wrong_size_is_a_protocol_error():
    lines = fetch_lines()
    lines[1] = bytearray(b"short")
    with pytest.raises(ProtocolError):
        parse_fetch(lines)


def test_exists_counts():
    assert exists_counts([b"4 EXISTS", b"1 RECENT", b"OK Still here"]) == [4]


@given(st.lists(st.binary(max_size=60), max_size=6))
def test_parsers_never_crash_on_garbage(lines):
    for parse in (parse_fetch, parse_select):
        with contextlib.suppress(ProtocolError):
            parse(lines)


def test_event_fields_from_headers():
    [m] = parse_fetch(fetch_lines())
    e = new_mail_event(
        m,
        tenant_id="t",
        email_type="r",
        mailbox_id="t:r",
        folder="INBOX",
        uidvalidity=9,
        producer_id="p",
        detected_at=datetime.now(UTC),
    )
    assert e.message_id == "<r-1@hotel.test>"
    assert e.from_address == "Jürgen <j@x.de>"
    assert e.subject == "Booking for two"
    assert e.date == datetime(2026, 11, 24, 2, 59, 58, tzinfo=UTC)
    assert e.size == 312 and e.uid == 5 and e.uidvalidity == 9


def test_event_with_missing_and_broken_headers():
    [m] = parse_fetch(fetch_lines(header=b"Date: not a date\r\nSubject: =?bogus?q?x?=\r\n\r\n"))
    e = new_mail_event(
        m,
        tenant_id="t",
        email_type="r",
        mailbox_id="t:r",
        folder="INBOX",
        uidvalidity=9,
        producer_id="p",
        detected_at=datetime.now(UTC),
    )
    assert e.date is None and e.message_id is None and e.from_address is None
