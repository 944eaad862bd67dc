"""From a fetched message to a `NewMailDetected` event (pure)."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import re
from datetime import UTC, datetime, timedelta, timezone

from producers.imap_responses import FetchedMessage
from producers.limits import MAX_HEADER_VALUE_CHARS
from schemas.events import NewMailDetected, new_mail_event_id

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}
_INTERNALDATE = re.compile(
    r"^\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)


def parse_internaldate(text: str | None) -> datetime | None:
    """RFC 3501 date-time, e.g. `24-Nov-2026 03:01:02 +0100`, as an aware datetime in UTC."""
    m = _INTERNALDATE.match(text or "")
    if not m or m.group(2).title() not in _MONTHS:
        return None
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    try:
        local = datetime(
            int(year),
            _MONTHS[mon.title()],
            int(day),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None
    return local.astimezone(UTC)


def _header(msg: email.message.Message, name: str) -> str | None:
    try:
        value = msg.get(name)
    except Exception:  # a malformed header must not cost us the event
        value = None
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text[:MAX_HEADER_VALUE_CHARS]


def _date(msg: email.message.Message) -> datetime | None:
    raw = _header(msg, "Date")
    if not raw:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000": unknown zone, RFC 5322 says treat as UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def new_mail_event(
    fetched: FetchedMessage,
    *,
    tenant_id: str,
    email_type: str,
    mailbox_id: str,
    folder: str,
    uidvalidity: int,
    producer_id: str,
    detected_at: datetime,
) -> NewMailDetected:
    msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(fetched.header)
    return NewMailDetected(
        event_id=new_mail_event_id(tenant_id, mailbox_id, folder, uidvalidity, fetched.uid),
        tenant_id=tenant_id,
        email_type=email_type,
        mailbox_id=mailbox_id,
        folder=folder,
        uidvalidity=uidvalidity,
        uid=fetched.uid,
        message_id=_header(msg, "Message-ID"),
        from_address=_header(msg, "From"),
        subject=_header(msg, "Subject"),
        date=_date(msg),
        internal_date=parse_internaldate(fetched.internal_date),
        size=fetched.size,
        detected_at=detected_at,
        producer_id=producer_id,
    )
