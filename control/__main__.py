"""`python -m control COMMAND`: operator commands for credentials (more to come with the API).

  gen-key KEY_ID                       print a new key ring entry (KEY_ID:base64) for
                                       IDLEWIRE_CREDENTIAL_KEYS
  set-password MAILBOX_ID              store a mailbox password read from stdin
  set-oauth MAILBOX_ID --expires-in S  store OAuth tokens: JSON {"access_token", "refresh_token"}
                                       read from stdin
  rotate-keys                          re-encrypt all credentials under the primary key
  serve [--port P]                     run the HTTP API and the outbox relay
  tenant-create TENANT_ID NAME         create a tenant; prints its first API token
  admin-token                          create an admin API token
  mailbox-add TENANT EMAIL_TYPE --host H --username U [--port --security --folder ...]
                                       register a mailbox (password read from stdin)
  start|stop TENANT EMAIL_TYPE         start or stop watching a mailbox
  status [TENANT]                      mailboxes as a table

Secrets are read from stdin, never from arguments (they would show in `ps` and shell history).
DATABASE_URL and IDLEWIRE_CREDENTIAL_KEYS come from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from control import mailboxes as mb
from control.auth import create_credential
from control.credentials import PostgresSecretStore
from control.crypto import KeyRing, KeyRingError
from control.db import connect
from producers.config import MailboxConfig
from producers.oauth import OAuthTokens


async def _store_command(args: argparse.Namespace) -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("error: DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        keys = KeyRing.from_env()
    except KeyRingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pool = await connect(url, max_size=2)
    try:
        store = PostgresSecretStore(pool, keys)
        if args.cmd == "set-password":
            password = sys.stdin.readline().rstrip("\n")
            if not password:
                print("error: empty password on stdin", file=sys.stderr)
                return 2
            await store.put_password(args.mailbox_id, password)
        elif args.cmd == "set-oauth":
            data = json.loads(sys.stdin.read())
            now = datetime.now(UTC)
            await store.put_oauth(
                args.mailbox_id,
                OAuthTokens(
                    access_token=SecretStr(data["access_token"]),
                    refresh_token=SecretStr(data["refresh_token"])
                    if data.get("refresh_token")
                    else None,
                    expires_at=now + timedelta(seconds=args.expires_in),
                    obtained_at=now,
                    scope=data.get("scope"),
                ),
            )
        elif args.cmd == "serve":
            return await _serve(pool, store, args.port)
        elif args.cmd == "tenant-create":
            if not await mb.create_tenant(pool, args.tenant_id, args.name):
                print(f"error: tenant {args.tenant_id} exists", file=sys.stderr)
                return 1
            print(await create_credential(pool, tenant_id=args.tenant_id))
        elif args.cmd == "admin-token":
            print(await create_credential(pool, tenant_id=None, is_admin=True))
        elif args.cmd == "mailbox-add":
            settings = {k: v for k, v in vars(args).items() if k in MAILBOX_FLAGS and v is not None}
            cfg = MailboxConfig(tenant_id=args.tenant_id, email_type=args.email_type, **settings)
            await mb.put_mailbox(pool, cfg)
            password = sys.stdin.readline().rstrip("\n")
            if password:
                await store.put_password(cfg.mailbox_id, password)
            print(cfg.mailbox_id)
        elif args.cmd in ("start", "stop"):
            row = await mb.set_enabled(pool, args.tenant_id, args.email_type, args.cmd == "start")
            if row is None:
                print(f"error: no mailbox {args.tenant_id}:{args.email_type}", file=sys.stderr)
                return 1
        elif args.cmd == "status":
            _print_table(await mb.list_mailboxes(pool, args.tenant_id))
        elif args.cmd == "rotate-keys":
            done, broken = await store.rotate()
            print(f"re-encrypted {done} credential(s) under key {keys.primary_id}")
            if broken:
                print(f"cannot decrypt (no matching key): {', '.join(broken)}", file=sys.stderr)
                return 1
        return 0
    finally:
        await pool.close()


MAILBOX_FLAGS = (
    "host",
    "port",
    "security",
    "username",
    "folder",
    "ca_file",
    "auth",
    "oauth_token_url",
    "oauth_client_id",
    "oauth_client_secret_ref",
    "provider",
)


def _print_table(rows: list[mb.MailboxRow]) -> None:
    print(f"{'MAILBOX':40} {'ENABLED':8} {'VERSION':8} {'SERVER':40}")
    for r in rows:
        server = f"{r.config.host}:{r.config.port}"
        print(
            f"{r.mailbox_id:40} {'yes' if r.enabled else 'no':8} {r.config_version:<8} {server:40}"
        )


async def _serve(pool: Any, store: PostgresSecretStore, port: int) -> int:
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    from control.api import make_app
    from control.outbox import OutboxRelay
    from producers._kafka import ensure_topics

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    topic = os.environ.get("IDLEWIRE_COMMAND_TOPIC", "idlewire.mailbox-commands")
    await ensure_topics(bootstrap, [topic], compacted=True)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    relay = asyncio.create_task(OutboxRelay(pool, producer, topic).run())
    runner = web.AppRunner(make_app(pool, store, os.environ.get("STREAMS_URL", "")))
    await runner.setup()
    await web.TCPSite(runner, os.environ.get("IDLEWIRE_API_HOST", "127.0.0.1"), port).start()
    print(f"control API on port {port}, commands to {topic}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    relay.cancel()
    await runner.cleanup()
    await producer.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m control",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("gen-key").add_argument("key_id")
    sub.add_parser("set-password").add_argument("mailbox_id")
    o = sub.add_parser("set-oauth")
    o.add_argument("mailbox_id")
    o.add_argument("--expires-in", type=float, default=3600)
    sub.add_parser("rotate-keys")
    sub.add_parser("serve").add_argument("--port", type=int, default=18000)
    t = sub.add_parser("tenant-create")
    t.add_argument("tenant_id")
    t.add_argument("name")
    sub.add_parser("admin-token")
    m = sub.add_parser("mailbox-add")
    m.add_argument("tenant_id")
    m.add_argument("email_type")
    for flag in MAILBOX_FLAGS:
        m.add_argument(
            f"--{flag.replace('_', '-')}", dest=flag, type=int if flag == "port" else str
        )
    for cmd in ("start", "stop"):
        c = sub.add_parser(cmd)
        c.add_argument("tenant_id")
        c.add_argument("email_type")
    sub.add_parser("status").add_argument("tenant_id", nargs="?")
    args = p.parse_args(argv)
    if args.cmd == "gen-key":
        print(KeyRing.generate(args.key_id))
        return 0
    return asyncio.run(_store_command(args))


if __name__ == "__main__":
    sys.exit(main())
