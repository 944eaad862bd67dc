"""Pure policy: the state table, backoff, checkpoint rules. No sockets, no sleeps."""

from __future__ import annotations

import pytest

from producers.backoff import AttemptCounter, BackoffPolicy
from producers.checkpoint import Checkpoint, FolderStatus, advance, resume
from producers.states import TRANSITIONS, IllegalTransition, StateMachine
from schemas.events import ConnectionState as S


def test_table_covers_every_state_and_error_is_reachable_from_every_active_state():
    assert set(TRANSITIONS) == set(S)
    for state in (S.CONNECTING, S.CONNECTED, S.AUTHENTICATING, S.AUTHENTICATED, S.IDLE):
        assert S.ERROR in TRANSITIONS[state]
        assert S.DISCONNECTED in TRANSITIONS[state]


def test_happy_path_and_sequence():
    m = StateMachine()
    for s in (S.CONNECTING, S.CONNECTED, S.AUTHENTICATING, S.AUTHENTICATED, S.IDLE):
        t = m.move(s)
    assert t.previous is S.AUTHENTICATED and t.state is S.IDLE and t.sequence == 5


def test_illegal_transition_raises():
    m = StateMachine()
    with pytest.raises(IllegalTransition):
        m.move(S.IDLE)
    m.move(S.CONNECTING)
    with pytest.raises(IllegalTransition):
        m.move(S.AUTHENTICATED)


def test_backoff_grows_caps_and_jitters_within_bounds():
    p = BackoffPolicy(base_seconds=5, cap_seconds=60, max_attempts=10, slow_retry_seconds=900)
    assert [p.delay(n, rand=lambda: 1.0) for n in range(1, 6)] == [5, 10, 20, 40, 60]
    assert [p.delay(n, rand=lambda: 0.0) for n in range(1, 4)] == [2.5, 5, 10]
    assert p.delay(11, rand=lambda: 0.0) == 450
    assert not p.exhausted(10) and p.exhausted(11)


def test_attempts_reset_only_after_a_stable_connection():
    c = AttemptCounter(BackoffPolicy(stable_after_seconds=300))
    assert c.failed(now=0) == 1
    c.connected(now=10)
    assert c.failed(now=20) == 2  # dropped right after login: keep counting
    c.connected(now=30)
    assert c.failed(now=400) == 1  # was up 370 s: a fresh start


def test_first_watch_starts_at_the_end_of_the_folder():
    r = resume(None, FolderStatus(uidvalidity=7, uidnext=11, exists=10))
    assert r.checkpoint == Checkpoint(7, 10) and not r.reset


def test_resume_continues_after_last_published_uid():
    stored = Checkpoint(7, 4)
    assert resume(stored, FolderStatus(7, 11, 10)).checkpoint == stored


def test_uidvalidity_change_resets():
    r = resume(Checkpoint(7, 4), FolderStatus(8, 3, 2))
    assert r.reset and r.checkpoint == Checkpoint(8, 2)


def test_empty_folder_without_uidnext():
    assert resume(None, FolderStatus(5, None, 0)).checkpoint == Checkpoint(5, 0)


def test_advance_never_goes_back():
    cp = Checkpoint(1, 10)
    assert advance(cp, 5) == cp
    assert advance(cp, 12) == Checkpoint(1, 12)


def test_token_bucket_allows_a_burst_then_paces():
    from producers.pacing import TokenBucket

    b = TokenBucket(rate=10, burst=3)
    assert [b.reserve(0.0) for _ in range(3)] == [0, 0, 0]
    assert b.reserve(0.0) == pytest.approx(0.1)
    assert b.reserve(0.0) == pytest.approx(0.2)
    assert b.reserve(10.0) == 0  # refilled (capped at burst)


async def test_gate_caps_concurrent_attempts_per_server():
    import asyncio

    from producers.pacing import ConnectGate

    gate = ConnectGate(concurrency=2, rate=1e9, burst=1e9)
    inside, peak = 0, 0

    async def attempt(host: str) -> None:
        nonlocal inside, peak
        async with gate.slot(host, 993):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(attempt("imap.a") for _ in range(6)))
    assert peak == 2
    peak = 0
    await asyncio.gather(*(attempt(h) for h in ("imap.a", "imap.a", "imap.b", "imap.b")))
    assert peak == 4  # separate servers do not share a gate
