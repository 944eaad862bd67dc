"""Where a mailbox folder's stream of UIDs stands, and the rules for moving it.

Source partition = (tenant, mailbox, folder); offset = (UIDVALIDITY, last published UID). The
checkpoint advances only after Kafka has acknowledged the events up to that UID.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    uidvalidity: int
    last_uid: int


@dataclasses.dataclass(frozen=True, slots=True)
class FolderStatus:
    """What SELECT told us about the folder."""

    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclasses.dataclass(frozen=True, slots=True)
class Resume:
    """Where to resume after SELECT; `reset` is set when UIDVALIDITY changed under us."""

    checkpoint: Checkpoint
    reset: bool = False


def resume(stored: Checkpoint | None, status: FolderStatus) -> Resume:
    """Decide where publishing resumes after a (re)connect.

    No checkpoint yet: start at the folder's current end (mail that is already there is not
    "new"), so the first watch of a mailbox does not replay its history. Same UIDVALIDITY:
    continue after the last published UID, so mail delivered while we were away is published.
    Different UIDVALIDITY: the server renumbered the folder; old UIDs mean nothing, so start at
    the new end and report a reset.
    """
    end = max((status.uidnext or 1) - 1, 0)
    if stored is None:
        return Resume(Checkpoint(status.uidvalidity, end))
    if stored.uidvalidity != status.uidvalidity:
        return Resume(Checkpoint(status.uidvalidity, end), reset=True)
    return Resume(stored)


def advance(current: Checkpoint, acked_uid: int) -> Checkpoint:
    """The checkpoint after Kafka acknowledged every event up to `acked_uid`; never goes back."""
    if acked_uid <= current.last_uid:
        return current
    return dataclasses.replace(current, last_uid=acked_uid)


class CheckpointStore(Protocol):
    async def load(self, mailbox_id: str, folder: str) -> Checkpoint | None: ...

    async def save(self, mailbox_id: str, folder: str, checkpoint: Checkpoint) -> None: ...


class MemoryCheckpointStore:
    """Process-local store: enough for one process's lifetime (tests, demo)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], Checkpoint] = {}

    async def load(self, mailbox_id: str, folder: str) -> Checkpoint | None:
        return self._data.get((mailbox_id, folder))

    async def save(self, mailbox_id: str, folder: str, checkpoint: Checkpoint) -> None:
        self._data[(mailbox_id, folder)] = checkpoint
