"""The status table's logic, pure: no Kafka, no Faust, no clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import ConnectionState as S
from schemas.events import Event, MailboxResynced
from streams import status
from streams.status import TenantStatus, apply
from tests.streams.events import HAPPY, T0, mail, session, state


def fold(events: Sequence[Event], start: TenantStatus | None = None) -> TenantStatus:
    t = start
    for e in events:
        t = apply(t, e)
    assert t is not None
    return t


def row(t: TenantStatus, mailbox: str = "m1") -> status.MailboxStatus:
    return t.mailboxes[mailbox]


def test_a_session_sets_state_since_previous_and_producer() -> None:
    t = fold(session("acme", "m1"))
    r = row(t)
    assert (r.state, r.previous_state) == (S.IDLE, S.AUTHENTICATED)
    assert r.since == T0 + timedelta(seconds=5)
    assert (r.producer_id, r.email_type) == ("p1", "reservations")
    assert (r.reconnects, r.last_error) == (0, None)


def test_every_event_twice_changes_nothing_the_second_time() -> None:
    events: list[Event] = [*session("acme", "m1"), mail("acme", "m1", 10), mail("acme", "m1", 11)]
    once = fold(events)
    t = None
    for e in events:
        t = apply(t, e)
        again = apply(t, e)
        assert again is t, f"duplicate {e.event_id} was applied twice"
    assert t == once
    assert row(once).new_mails_on(T0.date()) == 2


def test_an_older_state_event_does_not_overwrite_a_newer_one() -> None:
    events = session("acme", "m1")
    t = fold([*events[:4], events[4], events[2], events[0]])  # idle, then late 3 and 1
    assert row(t).state is S.IDLE and row(t).position.sequence == 5  # type: ignore[union-attr]


def test_within_a_session_the_sequence_wins_over_a_stepped_back_clock() -> None:
    first = state("acme", "m1", 1, S.CONNECTING, S.DISCONNECTED, at=T0)
    second = state("acme", "m1", 2, S.CONNECTED, S.CONNECTING, at=T0 - timedelta(seconds=30))
    assert row(fold([first, second])).state is S.CONNECTED
    assert row(fold([second, first])).state is S.CONNECTED


def test_across_sessions_the_later_occurrence_wins_in_either_order() -> None:
    old = state("acme", "m1", 9, S.IDLE, S.AUTHENTICATED, session="old", at=T0)
    new = state("acme", "m1", 1, S.CONNECTING, S.DISCONNECTED, session="new", producer="p2",
                at=T0 + timedelta(seconds=1))
    for order in ([old, new], [new, old]):
        r = row(fold(order))
        assert (r.state, r.producer_id) == (S.CONNECTING, "p2")


def test_equal_times_in_two_sessions_resolve_the_same_way_in_either_order() -> None:
    a = state("acme", "m1", 3, S.IDLE, S.AUTHENTICATED, session="a", at=T0)
    b = state("acme", "m1", 1, S.CONNECTING, S.DISCONNECTED, session="b", at=T0)
    assert fold([a, b]) == fold([b, a])


def test_last_error_is_kept_after_recovery_and_only_a_newer_error_replaces_it() -> None:
    s = session("acme", "m1", [S.CONNECTING, S.ERROR, S.CONNECTING, S.ERROR, S.CONNECTING,
                               S.CONNECTED])
    s[1] = dataclasses.replace(s[1], reason="timeout", error_class="ConnectTimeout")
    s[3] = dataclasses.replace(s[3], reason="reset", error_class="ConnectionReset")
    t = fold(s)
    r = row(t)
    assert r.state is S.CONNECTED
    assert r.last_error is not None
    assert (r.last_error.reason, r.last_error.error_class) == ("reset", "ConnectionReset")
    assert r.last_error.position.occurred_at == s[3].occurred_at
    assert r.reconnects == 2
    # The older error arriving again (late duplicate) replaces nothing.
    assert apply(t, s[1]) is t


def test_a_late_error_newer_than_the_recorded_one_becomes_the_last_error() -> None:
    s = session("acme", "m1", [S.CONNECTING, S.ERROR, S.CONNECTING, S.ERROR, S.CONNECTING])
    s[1] = dataclasses.replace(s[1], reason="first")
    s[3] = dataclasses.replace(s[3], reason="second")
    r = row(fold([s[0], s[1], s[2], s[4], s[3]]))  # the second error arrives last
    assert r.state is S.CONNECTING and r.position.sequence == 5  # type: ignore[union-attr]
    assert r.last_error is not None and r.last_error.reason == "second"


def test_new_mail_counts_per_utc_day_and_tracks_the_latest_detection() -> None:
    day1 = T0.replace(hour=23, minute=59)
    day2 = day1 + timedelta(minutes=2)
    t = fold([mail("acme", "m1", 1, at=day1), mail("acme", "m1", 2, at=day2),
              mail("acme", "m1", 3, at=day2 + timedelta(seconds=1))])
    r = row(t)
    assert r.new_mails_on(day2.date()) == 2 and r.new_mails_on(day1.date()) == 0
    assert r.last_new_mail_at == day2 + timedelta(seconds=1)
    # A late mail of the previous day is remembered (not counted twice later) but is not today's.
    late = apply(t, mail("acme", "m1", 0, at=day1 - timedelta(hours=1)))
    assert row(late).new_mails_on(day2.date()) == 2
    assert row(late).last_new_mail_at == day2 + timedelta(seconds=1)
    assert apply(late, mail("acme", "m1", 0, at=day1 - timedelta(hours=1))) is late


def test_a_replay_larger_than_any_recent_id_list_is_counted_once() -> None:
    batch = [mail("acme", "m1", uid, at=T0) for uid in range(100, 400)]
    t = fold(batch)
    assert fold(batch, t) is t  # a producer crash replays the whole batch
    assert row(t).new_mails_on(T0.date()) == 300
    assert len(row(t).seen) == 1 and row(t).seen[0].ranges == ((100, 399),)


def test_the_same_uid_under_a_new_uidvalidity_is_a_new_mail() -> None:
    t = fold([mail("acme", "m1", 5, at=T0), mail("acme", "m1", 5, uidvalidity=8, at=T0)])
    assert row(t).new_mails_on(T0.date()) == 2


def test_a_mailbox_seen_only_through_mail_has_no_state_yet() -> None:
    r = row(fold([mail("acme", "m1", 1)]))
    assert r.state is None and r.since is None and r.producer_id == "p1"


def test_a_resync_changes_nothing() -> None:
    t = fold(session("acme", "m1"))
    resync = MailboxResynced("e", "acme", "reservations", "m1", "INBOX", 7, 8, 0, "p1", T0)
    assert apply(t, resync) is t


def test_an_event_of_another_tenant_is_a_bug() -> None:
    with pytest.raises(ValueError):
        apply(fold([mail("acme", "m1", 1)]), mail("other", "m9", 1))


def test_mailboxes_beyond_the_cap_are_counted_not_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "MAX_MAILBOXES_PER_TENANT", 2)
    t = fold([mail("acme", f"m{i}", 1) for i in range(4)])
    assert sorted(t.mailboxes) == ["m0", "m1"] and t.untracked_events == 2
    assert row(apply(t, mail("acme", "m1", 2)), "m1").new_mails_on(T0.date()) == 2


def test_rows_of_two_mailboxes_do_not_touch() -> None:
    t = fold([*session("acme", "m1"), mail("acme", "m2", 1, email_type="groups")])
    assert row(t, "m1").new_mails_on(T0.date()) == 0 and row(t, "m1").state is S.IDLE
    assert row(t, "m2").email_type == "groups" and row(t, "m2").state is None


# Any arrival order, with any duplicates, ends in the same row (except the reconnect count,
# which counts only reconnects accepted in order, so reordering can lower it, never raise it).
ALL: list[Event] = [
    *session("acme", "m1", [S.CONNECTING, S.ERROR, S.CONNECTING, S.CONNECTED, S.AUTHENTICATING,
                            S.AUTHENTICATED, S.IDLE, S.ERROR, S.CONNECTING]),
    # Distinct times in the second session, so cross-session order is by time only.
    *(dataclasses.replace(e, occurred_at=T0 + timedelta(hours=1, seconds=i))
      for i, e in enumerate(session("acme", "m1", HAPPY, session="s2", producer="p2"))),
    *(mail("acme", "m1", uid, at=T0 + timedelta(seconds=uid)) for uid in (3, 4, 5, 9, 10, 30)),
]



@given(st.permutations(ALL), st.lists(st.sampled_from(ALL), max_size=20), st.randoms())
def test_any_order_with_duplicates_gives_the_same_row(perm, dups, rnd) -> None:  # type: ignore[no-untyped-def]
    in_order = row(fold(ALL))
    stream = list(perm) + dups
    rnd.shuffle(stream)
    r = row(fold(stream))
    assert dataclasses.replace(r, reconnects=0, seen=()) == dataclasses.replace(
        in_order, reconnects=0, seen=()
    )
    assert r.reconnects <= in_order.reconnects == 2
    assert r.new_mails_on(T0.date()) == 6


def test_a_full_tenant_of_worst_case_rows_fits_in_one_kafka_record() -> None:
    """limits.py's arithmetic: MAX_MAILBOXES_PER_TENANT rows with every string at the producers'
    maximum length (producers.config) and every cap reached, under 1,000,000 bytes."""
    from streams import changelog_format, limits

    tenant = "t" * 200
    t = None
    for m in range(limits.MAX_MAILBOXES_PER_TENANT):
        mbox = f"{m:04d}" + "m" * 396
        kw = {"email_type": "e" * 100, "producer": "p" * 80, "session": "s" * 32, "at": T0}
        events: list[Event] = [
            state(tenant, mbox, 10**12, S.ERROR, S.AUTHENTICATING, reason="r" * 5000,
                  error_class="C" * 5000, **kw),  # type: ignore[arg-type]
        ]
        for v in range(limits.MAX_TRACKED_FOLDERS):
            events += [
                mail(tenant, mbox, 10**9 + 2 * i, folder="f" * 100, uidvalidity=2**32 - v,
                     email_type="e" * 100, producer="p" * 80, at=T0)
                for i in range(limits.MAX_UID_RANGES)
            ]
        for e in events:
            t = apply(t, e)
    assert t is not None and len(t.mailboxes) == limits.MAX_MAILBOXES_PER_TENANT
    assert all(len(r.seen) == limits.MAX_TRACKED_FOLDERS for r in t.mailboxes.values())
    assert all(len(f.ranges) == limits.MAX_UID_RANGES for r in t.mailboxes.values() for f in r.seen)
    size = len(changelog_format.dumps(t))
    assert size < 1_000_000, size
