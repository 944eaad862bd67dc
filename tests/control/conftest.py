"""Fixtures of the control-plane tests."""

from __future__ import annotations

import uuid

import asyncpg
import pytest


@pytest.fixture
async def fresh_db(stack):  # type: ignore[no-untyped-def]
    """A throwaway database, so migration tests start from nothing."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(stack["DATABASE_URL"])
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = stack["DATABASE_URL"].rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
