"""API rendering: fields, counts, today's mail count against an injected day, type filter."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from schemas.events import ConnectionState as S
from schemas.events import Event
from streams import render
from streams.status import TenantStatus, apply
from tests.streams.events import T0, mail, session


def tenant() -> TenantStatus:
    m1 = session("acme", "m1", [S.CONNECTING, S.ERROR])
    m1[1] = dataclasses.replace(m1[1], reason="bad password", error_class="AuthFailed")
    events: list[Event] = [
        *m1,
        *session("acme", "m2", email_type="groups"),
        mail("acme", "m2", 1, email_type="groups", at=T0),
        mail("acme", "m3", 1, at=T0),
    ]
    t = None
    for e in events:
        t = apply(t, e)
    assert t is not None
    return t


def test_a_tenant_answer_lists_rows_sorted_with_counts() -> None:
    out = render.tenant("acme", tenant(), T0.date())
    assert [m["mailbox_id"] for m in out["mailboxes"]] == ["m2", "m1", "m3"]
    assert out["counts"] == {
        "disconnected": 0, "connecting": 0, "connected": 0, "authenticating": 0,
        "authenticated": 0, "idle": 1, "error": 1, "unknown": 1,
    }
    m1 = next(m for m in out["mailboxes"] if m["mailbox_id"] == "m1")
    assert m1 == {
        "tenant_id": "acme", "email_type": "reservations", "mailbox_id": "m1",
        "state": "error", "since": (T0 + timedelta(seconds=2)).isoformat(),
        "previous_state": "connecting",
        "last_error": {"reason": "bad password", "error_class": "AuthFailed",
                       "at": (T0 + timedelta(seconds=2)).isoformat()},
        "reconnect_count": 0, "producer_id": "p1", "last_new_mail_at": None,
        "new_mails_today": 0,
    }


def test_new_mails_today_follows_the_day_passed_in() -> None:
    t = tenant()
    m2 = render.tenant("acme", t, T0.date(), "groups")["mailboxes"][0]
    assert m2["new_mails_today"] == 1 and m2["last_new_mail_at"] == T0.isoformat()
    tomorrow = render.tenant("acme", t, T0.date() + timedelta(days=1), "groups")
    assert tomorrow["mailboxes"][0]["new_mails_today"] == 0


def test_type_filter_and_unknown_types() -> None:
    t = tenant()
    out = render.tenant("acme", t, T0.date(), "reservations")
    assert out["email_type"] == "reservations"
    assert [m["mailbox_id"] for m in out["mailboxes"]] == ["m1", "m3"]
    assert render.has_type(t, "groups") and not render.has_type(t, "billing")
    assert not render.has_type(None, "groups")
    assert render.tenant("nobody", None, T0.date())["mailboxes"] == []


def test_all_tenants_sums_counts() -> None:
    a = render.tenant("acme", tenant(), T0.date())
    b = render.tenant("beta", None, T0.date())
    out = render.all_tenants([b, a])
    assert [t["tenant_id"] for t in out["tenants"]] == ["acme", "beta"]
    assert out["counts"]["idle"] == 1 and out["counts"]["unknown"] == 1
