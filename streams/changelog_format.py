"""`TenantStatus` <-> the bytes of a changelog record (compact JSON, versioned).

Faust writes the whole tenant value to the changelog on every update and rebuilds tables from it,
so this is the table's durable format: it must read every version it ever wrote. Encoding runs
once per event for all of the tenant's rows, so it is kept cheap: times are integer microseconds
since the epoch (UTC), days are ISO strings, and empty or default fields are left out
(docs/streams.md has the sizes and costs).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.events import ConnectionState
from streams.seen_uids import FolderUids
from streams.status import LastError, MailboxStatus, Position, TenantStatus

VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class ChangelogFormatError(ValueError):
    """A changelog value this code cannot read (not retriable: it will never parse)."""


def _us(t: datetime) -> int:
    return (t - _EPOCH) // _US


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _position(p: Position) -> list[Any]:
    return [_us(p.occurred_at), p.session_id, p.sequence]


def _row(r: MailboxStatus) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": r.email_type,
        "state": r.state.value if r.state else None,
        "prev": r.previous_state.value if r.previous_state else None,
        "at": _position(r.position) if r.position else None,
        "producer": r.producer_id,
        "error": (
            [r.last_error.reason, r.last_error.error_class, _position(r.last_error.position)]
            if r.last_error
            else None
        ),
        "reconnects": r.reconnects or None,
        "last_mail": _us(r.last_new_mail_at) if r.last_new_mail_at else None,
        "day": [r.mail_day.isoformat(), r.mails_on_day] if r.mail_day else None,
        "seen": [[f.folder, f.uidvalidity, [list(x) for x in f.ranges]] for f in r.seen] or None,
    }
    return {k: v for k, v in out.items() if v is not None}


def dumps(tenant: TenantStatus) -> bytes:
    doc: dict[str, Any] = {
        "v": VERSION,
        "tenant": tenant.tenant_id,
        "rows": {mailbox_id: _row(r) for mailbox_id, r in tenant.mailboxes.items()},
    }
    if tenant.untracked_events:
        doc["untracked"] = tenant.untracked_events
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _read_position(v: list[Any]) -> Position:
    return Position(_at(v[0]), v[1], v[2])


def _read_row(tenant_id: str, mailbox_id: str, d: dict[str, Any]) -> MailboxStatus:
    err = d.get("error")
    day = d.get("day")
    return MailboxStatus(
        tenant_id=tenant_id,
        email_type=d["type"],
        mailbox_id=mailbox_id,
        state=ConnectionState(d["state"]) if "state" in d else None,
        previous_state=ConnectionState(d["prev"]) if "prev" in d else None,
        position=_read_position(d["at"]) if "at" in d else None,
        producer_id=d.get("producer"),
        last_error=LastError(err[0], err[1], _read_position(err[2])) if err else None,
        reconnects=d.get("reconnects", 0),
        last_new_mail_at=_at(d["last_mail"]) if "last_mail" in d else None,
        mail_day=date.fromisoformat(day[0]) if day else None,
        mails_on_day=day[1] if day else 0,
        seen=tuple(
            FolderUids(f, v, tuple((lo, hi) for lo, hi in ranges))
            for f, v, ranges in d.get("seen", ())
        ),
    )


def loads(data: bytes) -> TenantStatus:
    try:
        doc = json.loads(data)
        if doc.get("v") != VERSION:
            raise ChangelogFormatError(f"unknown tenant-status version {doc.get('v')!r}")
        tenant_id = doc["tenant"]
        return TenantStatus(
            tenant_id=tenant_id,
            mailboxes={m: _read_row(tenant_id, m, r) for m, r in doc["rows"].items()},
            untracked_events=doc.get("untracked", 0),
        )
    except ChangelogFormatError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ChangelogFormatError(f"corrupt tenant-status value: {exc!r}") from exc
