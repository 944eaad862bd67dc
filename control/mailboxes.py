"""Tenants and their mailboxes in PostgreSQL; every change writes its command to the outbox in
the same transaction, so an accepted change can never be lost between PostgreSQL and Kafka."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from producers.config import MailboxConfig
from schemas.codec import encode
from schemas.events import MailboxAction, MailboxCommand, command_event_id


@dataclasses.dataclass(frozen=True)
class MailboxRow:
    mailbox_id: str
    tenant_id: str
    email_type: str
    config: MailboxConfig
    enabled: bool
    config_version: int
    updated_at: datetime


def mailbox_id(tenant_id: str, email_type: str) -> str:
    return f"{tenant_id}:{email_type}"


def _row(r: asyncpg.Record) -> MailboxRow:
    return MailboxRow(
        r["mailbox_id"],
        r["tenant_id"],
        r["email_type"],
        MailboxConfig.model_validate(json.loads(r["config"])),
        r["enabled"],
        r["config_version"],
        r["updated_at"],
    )


async def _emit(conn: asyncpg.Connection, row: Mapping[str, Any], action: MailboxAction) -> None:
    cmd = MailboxCommand(
        event_id=command_event_id(row["mailbox_id"], row["config_version"], action.value),
        tenant_id=row["tenant_id"],
        email_type=row["email_type"],
        mailbox_id=row["mailbox_id"],
        action=action,
        config_version=row["config_version"],
        occurred_at=datetime.now(UTC),
    )
    await conn.execute(
        "INSERT INTO command_outbox (mailbox_id, payload) VALUES ($1, $2)",
        row["mailbox_id"],
        encode(cmd),
    )
    await conn.execute("NOTIFY idlewire_outbox")


async def create_tenant(pool: asyncpg.Pool, tenant_id: str, name: str) -> bool:
    """False when it exists already."""
    status = await pool.execute(
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        tenant_id,
        name,
    )
    return bool(status.endswith(" 1"))


async def tenant_exists(pool: asyncpg.Pool, tenant_id: str) -> bool:
    return bool(await pool.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", tenant_id))


def _config_json(cfg: MailboxConfig) -> str:
    return cfg.model_dump_json(exclude={"password"})


async def put_mailbox(pool: asyncpg.Pool, cfg: MailboxConfig) -> tuple[MailboxRow, bool]:
    """Create or replace a mailbox's configuration. Returns (row, created). A running mailbox is
    told to restart with the new configuration (a new `start` command)."""
    async with pool.acquire() as conn, conn.transaction():
        r = await conn.fetchrow(
            """
            INSERT INTO mailboxes (mailbox_id, tenant_id, email_type, config)
            VALUES ($1, $2, $3, $4::jsonb)
            ON CONFLICT (mailbox_id) DO UPDATE SET config = EXCLUDED.config,
                config_version = mailboxes.config_version + 1, updated_at = now()
            RETURNING *, (xmax = 0) AS created
            """,
            cfg.mailbox_id,
            cfg.tenant_id,
            cfg.email_type,
            _config_json(cfg),
        )
        if r["enabled"]:
            await _emit(conn, r, MailboxAction.START)
        return _row(r), bool(r["created"])


async def set_enabled(
    pool: asyncpg.Pool, tenant_id: str, email_type: str, enabled: bool
) -> MailboxRow | None:
    async with pool.acquire() as conn, conn.transaction():
        r = await conn.fetchrow(
            "UPDATE mailboxes SET enabled = $3, config_version = config_version + 1,"
            " updated_at = now() WHERE tenant_id = $1 AND email_type = $2 RETURNING *",
            tenant_id,
            email_type,
            enabled,
        )
        if r is None:
            return None
        await _emit(conn, r, MailboxAction.START if enabled else MailboxAction.STOP)
        return _row(r)


async def delete_mailbox(pool: asyncpg.Pool, tenant_id: str, email_type: str) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        r = await conn.fetchrow(
            "DELETE FROM mailboxes WHERE tenant_id = $1 AND email_type = $2 RETURNING *",
            tenant_id,
            email_type,
        )
        if r is None:
            return False
        await conn.execute("DELETE FROM mailbox_credentials WHERE mailbox_id = $1", r["mailbox_id"])
        # config_version + 1 so the delete outranks the last command for this mailbox
        await _emit(
            conn, {**dict(r), "config_version": r["config_version"] + 1}, MailboxAction.DELETE
        )
        return True


async def get_mailbox(pool: asyncpg.Pool, mailbox_id: str) -> MailboxRow | None:
    r = await pool.fetchrow("SELECT * FROM mailboxes WHERE mailbox_id = $1", mailbox_id)
    return _row(r) if r else None


async def list_mailboxes(pool: asyncpg.Pool, tenant_id: str | None = None) -> list[MailboxRow]:
    if tenant_id is None:
        rows = await pool.fetch("SELECT * FROM mailboxes ORDER BY mailbox_id")
    else:
        rows = await pool.fetch(
            "SELECT * FROM mailboxes WHERE tenant_id = $1 ORDER BY email_type", tenant_id
        )
    return [_row(r) for r in rows]


def public_view(row: MailboxRow) -> dict[str, Any]:
    """What the API shows of a mailbox: configuration without any secret."""
    cfg = json.loads(row.config.model_dump_json(exclude={"password"}))
    return {
        "mailbox_id": row.mailbox_id,
        "email_type": row.email_type,
        "enabled": row.enabled,
        "config_version": row.config_version,
        "updated_at": row.updated_at.isoformat(),
        "config": cfg,
    }
