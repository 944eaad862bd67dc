"""Which new-mail UIDs a mailbox row has already counted, in bounded memory.

A `NewMailDetected.event_id` is UUIDv5 of tenant/mailbox/folder/UIDVALIDITY/UID (docs/decisions.md),
so "counted once per event_id" is the same as "counted once per (folder, UIDVALIDITY, UID)". UIDs
only grow within a UIDVALIDITY, so the counted UIDs of a folder collapse into a few disjoint
ranges: exact duplicate detection at any age and in any order, where a list of recent event ids
would forget a duplicate once a larger replay (a producer crash re-publishes up to a whole fetch
batch) pushed it out.
"""

from __future__ import annotations

import bisect
import dataclasses

from streams.limits import MAX_TRACKED_FOLDERS, MAX_UID_RANGES

Ranges = tuple[tuple[int, int], ...]  # sorted, disjoint, non-adjacent, inclusive (lo, hi)


def contains(ranges: Ranges, uid: int) -> bool:
    i = bisect.bisect_right(ranges, uid, key=lambda r: r[0]) - 1
    return i >= 0 and ranges[i][0] <= uid <= ranges[i][1]


def add(ranges: Ranges, uid: int, cap: int = MAX_UID_RANGES) -> Ranges:
    """Ranges plus `uid`; over `cap`, the closest two ranges merge (their gap counts as seen)."""
    if contains(ranges, uid):
        return ranges
    out = list(ranges)
    i = bisect.bisect_left(out, (uid, uid))
    out.insert(i, (uid, uid))
    # Join with the neighbours it touches, right first so index i stays valid.
    if i + 1 < len(out) and out[i + 1][0] == uid + 1:
        out[i : i + 2] = [(uid, out[i + 1][1])]
    if i > 0 and out[i - 1][1] == uid - 1:
        out[i - 1 : i + 1] = [(out[i - 1][0], out[i][1])]
    while len(out) > cap:
        # Merging loses the gap's UIDs (a late mail there is taken for a duplicate); merging the
        # smallest gap loses the fewest.
        j = min(range(len(out) - 1), key=lambda k: out[k + 1][0] - out[k][1])
        out[j : j + 2] = [(out[j][0], out[j + 1][1])]
    return tuple(out)


@dataclasses.dataclass(frozen=True, slots=True)
class FolderUids:
    folder: str
    uidvalidity: int
    ranges: Ranges


# Least recently counted first, so eviction drops index 0.
SeenUids = tuple[FolderUids, ...]


def seen(state: SeenUids, folder: str, uidvalidity: int, uid: int) -> bool:
    return any(
        f.folder == folder and f.uidvalidity == uidvalidity and contains(f.ranges, uid)
        for f in state
    )


def record(
    state: SeenUids, folder: str, uidvalidity: int, uid: int, max_folders: int = MAX_TRACKED_FOLDERS
) -> SeenUids:
    current = next(
        (f for f in state if f.folder == folder and f.uidvalidity == uidvalidity), None
    )
    ranges = add(current.ranges if current else (), uid)
    rest = tuple(f for f in state if f is not current)
    return (*rest, FolderUids(folder, uidvalidity, ranges))[-max_folders:]
