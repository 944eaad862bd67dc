"""Durable checkpoints of watched folders in PostgreSQL (producers.checkpoint.CheckpointStore)."""

from __future__ import annotations

import asyncpg

from producers.checkpoint import Checkpoint


class PostgresCheckpointStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load(self, mailbox_id: str, folder: str) -> Checkpoint | None:
        row = await self._pool.fetchrow(
            "SELECT uidvalidity, last_uid FROM checkpoints WHERE mailbox_id = $1 AND folder = $2",
            mailbox_id,
            folder,
        )
        return Checkpoint(row["uidvalidity"], row["last_uid"]) if row else None

    async def save(self, mailbox_id: str, folder: str, checkpoint: Checkpoint) -> None:
        # A checkpoint never moves back within one UIDVALIDITY, even if two producers overlap
        # for a moment during a hand-over; a new UIDVALIDITY replaces it outright.
        await self._pool.execute(
            """
            INSERT INTO checkpoints (mailbox_id, folder, uidvalidity, last_uid)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (mailbox_id, folder) DO UPDATE
               SET uidvalidity = EXCLUDED.uidvalidity,
                   last_uid = CASE WHEN checkpoints.uidvalidity = EXCLUDED.uidvalidity
                                   THEN GREATEST(checkpoints.last_uid, EXCLUDED.last_uid)
                                   ELSE EXCLUDED.last_uid END,
                   updated_at = now()
            """,
            mailbox_id,
            folder,
            checkpoint.uidvalidity,
            checkpoint.last_uid,
        )
