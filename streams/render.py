"""Status rows -> the JSON the HTTP API returns (pure; `today` is passed in, never read here).

Internal bookkeeping (event positions, counted UIDs) stays out of responses. Counts are derived
from the rows at read time, so they can never disagree with them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from schemas.events import ConnectionState
from streams.status import MailboxStatus, TenantStatus

UNKNOWN = "unknown"  # a mailbox seen only through new-mail events so far
STATE_NAMES = (*(s.value for s in ConnectionState), UNKNOWN)

JSON = dict[str, Any]


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def counts_by_state(rows: Iterable[MailboxStatus]) -> dict[str, int]:
    counts = dict.fromkeys(STATE_NAMES, 0)
    for r in rows:
        counts[r.state.value if r.state else UNKNOWN] += 1
    return counts


def mailbox(row: MailboxStatus, today: date) -> JSON:
    err = row.last_error
    return {
        "tenant_id": row.tenant_id,
        "email_type": row.email_type,
        "mailbox_id": row.mailbox_id,
        "state": row.state.value if row.state else UNKNOWN,
        "since": _iso(row.since),
        "previous_state": row.previous_state.value if row.previous_state else None,
        "last_error": (
            {
                "reason": err.reason,
                "error_class": err.error_class,
                "at": _iso(err.position.occurred_at),
            }
            if err
            else None
        ),
        "reconnect_count": row.reconnects,
        "producer_id": row.producer_id,
        "last_new_mail_at": _iso(row.last_new_mail_at),
        "new_mails_today": row.new_mails_on(today),
    }


def _rows(tenant: TenantStatus | None, email_type: str | None) -> list[MailboxStatus]:
    rows = tenant.mailboxes.values() if tenant else ()
    picked = [r for r in rows if email_type is None or r.email_type == email_type]
    return sorted(picked, key=lambda r: (r.email_type, r.mailbox_id))


def tenant(
    tenant_id: str, status: TenantStatus | None, today: date, email_type: str | None = None
) -> JSON:
    """One tenant's answer; with `email_type`, only that type's mailboxes and their counts."""
    rows = _rows(status, email_type)
    out: JSON = {"tenant_id": tenant_id}
    if email_type is not None:
        out["email_type"] = email_type
    out["counts"] = counts_by_state(rows)
    out["mailboxes"] = [mailbox(r, today) for r in rows]
    if status is not None and status.untracked_events and email_type is None:
        out["untracked_events"] = status.untracked_events
    return out


def has_type(status: TenantStatus | None, email_type: str) -> bool:
    return status is not None and any(
        r.email_type == email_type for r in status.mailboxes.values()
    )


def all_tenants(tenants: Iterable[JSON]) -> JSON:
    """The admin answer: every tenant (already rendered by its owner) plus overall counts."""
    ordered = sorted(tenants, key=lambda t: str(t["tenant_id"]))
    totals = dict.fromkeys(STATE_NAMES, 0)
    for t in ordered:
        for state, n in t["counts"].items():
            totals[state] = totals.get(state, 0) + n
    return {"counts": totals, "tenants": ordered}
