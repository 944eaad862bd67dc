"""Counted-UID ranges: exact while under the cap, a superset (never a subset) when over it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams import seen_uids
from streams.seen_uids import Ranges


def well_formed(r: Ranges) -> bool:
    return all(lo <= hi for lo, hi in r) and all(
        r[i][1] + 1 < r[i + 1][0] for i in range(len(r) - 1)
    )


def build(uids: list[int], cap: int) -> Ranges:
    r: Ranges = ()
    for u in uids:
        r = seen_uids.add(r, u, cap)
    return r


def test_contiguous_uids_collapse_into_one_range_in_any_order() -> None:
    assert build([5, 3, 4, 1, 2], 16) == ((1, 5),)
    assert build([1, 3], 16) == ((1, 1), (3, 3))
    assert build([1, 3, 2], 16) == ((1, 3),)


def test_over_the_cap_the_smallest_gap_is_merged() -> None:
    assert build([1, 10, 12, 30], 3) == ((1, 1), (10, 12), (30, 30))


@given(st.lists(st.integers(1, 300), max_size=80))
def test_exact_under_a_large_cap(uids: list[int]) -> None:
    r = build(uids, 1000)
    assert well_formed(r)
    assert {u for u in range(0, 302) if seen_uids.contains(r, u)} == set(uids)


@given(st.lists(st.integers(1, 300), max_size=80), st.integers(1, 6))
def test_bounded_and_never_forgets_under_a_small_cap(uids: list[int], cap: int) -> None:
    r = build(uids, cap)
    assert well_formed(r) and len(r) <= cap
    assert all(seen_uids.contains(r, u) for u in uids)


def test_folders_and_uidvalidities_are_separate_and_the_oldest_is_evicted() -> None:
    s: seen_uids.SeenUids = ()
    s = seen_uids.record(s, "INBOX", 1, 5, max_folders=2)
    s = seen_uids.record(s, "INBOX", 2, 5, max_folders=2)
    assert seen_uids.seen(s, "INBOX", 1, 5) and not seen_uids.seen(s, "Other", 1, 5)
    s = seen_uids.record(s, "Other", 1, 5, max_folders=2)
    assert not seen_uids.seen(s, "INBOX", 1, 5)  # least recently counted, evicted
    assert seen_uids.seen(s, "INBOX", 2, 5) and seen_uids.seen(s, "Other", 1, 5)
