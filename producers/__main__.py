"""`python -m producers`: run an IDLE producer process.

    python -m producers --mailboxes mailboxes.json
    python -m producers --tenant acme --email-type reservations --host imap.example.com \
        --username bookings@example.com --password-env IMAP_PASSWORD

Passwords never go on the command line: `--password-env NAME` names an environment variable,
and in a JSON file `"password_env": "NAME"` does the same (a literal "password" is accepted too).
Kafka settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, IDLEWIRE_*).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from producers import telemetry
from producers._kafka import ensure_topics
from producers.checkpoint import CheckpointStore
from producers.config import MailboxConfig, ProducerSettings
from producers.credentials import SecretStore
from producers.health import serve as serve_health
from producers.manager import Manager


class _ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ids = " ".join(
            f"{k}={getattr(record, k)}" for k in ("tenant_id", "mailbox_id") if hasattr(record, k)
        )
        return f"{base} {ids}" if ids else base


def _load_mailboxes(args: argparse.Namespace) -> list[MailboxConfig]:
    raw: list[dict[str, Any]]
    if args.group and not args.mailboxes:
        return []
    if args.mailboxes:
        raw = json.loads(Path(args.mailboxes).read_text())
    else:
        raw = [
            {
                k: v
                for k, v in {
                    "tenant_id": args.tenant,
                    "email_type": args.email_type,
                    "host": args.host,
                    "port": args.port,
                    "security": args.security,
                    "username": args.username,
                    "password_env": args.password_env,
                    "folder": args.folder,
                    "ca_file": args.ca_file,
                }.items()
                if v is not None
            }
        ]
    out = []
    for item in raw:
        item = dict(item)
        env_name = item.pop("password_env", None)
        if env_name is not None:
            if env_name not in os.environ:
                raise SystemExit(f"error: environment variable {env_name} (password) is not set")
            item["password"] = os.environ[env_name]
        out.append(MailboxConfig(**item))
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m producers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--group",
        action="store_true",
        help="share the mailboxes registered in PostgreSQL with the other producer "
        "processes of the group (Kafka consumer group on the commands topic)",
    )
    p.add_argument("--mailboxes", help="JSON file: a list of mailbox objects")
    p.add_argument("--tenant")
    p.add_argument("--email-type", default="default")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--security", choices=["tls", "starttls", "plain"])
    p.add_argument("--username")
    p.add_argument("--password-env", help="name of the environment variable holding the password")
    p.add_argument("--folder")
    p.add_argument("--ca-file")
    p.add_argument("--log-level", default="INFO")
    return p


async def _run(mailboxes: list[MailboxConfig], group: bool) -> int:
    settings = ProducerSettings()
    tracing = telemetry.setup("idlewire-producer", settings.instance_id)
    metering = telemetry.setup_metrics("idlewire-producer", settings.instance_id)
    checkpoints: CheckpointStore | None = None
    secrets: SecretStore | None = None
    pool = None
    if settings.database_url:
        from control.checkpoints import PostgresCheckpointStore
        from control.credentials import PostgresSecretStore
        from control.crypto import KeyRing, KeyRingError
        from control.db import connect

        pool = await connect(settings.database_url, max_size=5)
        checkpoints = PostgresCheckpointStore(pool)
        try:
            secrets = PostgresSecretStore(pool, KeyRing.from_env())
        except KeyRingError as exc:
            if any(m.password is None for m in mailboxes):
                raise SystemExit(f"error: credentials are in the database but {exc}") from None
    else:
        logging.getLogger("producers").warning(
            "DATABASE_URL not set: checkpoints live in memory and are lost at exit"
        )
    if group and pool is None:
        raise SystemExit("error: --group needs DATABASE_URL (mailbox configuration lives there)")
    if secrets is None and (group or any(m.password is None for m in mailboxes)):
        raise SystemExit(
            "error: a mailbox has no inline password and no credential store "
            "(set DATABASE_URL and IDLEWIRE_CREDENTIAL_KEYS)"
        )
    manager = Manager(settings, checkpoints, secrets)
    await manager.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for cfg in mailboxes:
        manager.watch(cfg)
    gc_task = asyncio.create_task(manager.settle_gc())
    follower_task: asyncio.Task[None] | None = None
    follower = None
    if group:
        from control import mailboxes as mb
        from producers.assignment import CommandFollower

        assert pool is not None

        async def load(mailbox_id: str) -> tuple[MailboxConfig, bool, int] | None:
            row = await mb.get_mailbox(pool, mailbox_id)
            return (row.config, row.enabled, row.config_version) if row else None

        await ensure_topics(
            settings.kafka_bootstrap_servers, [settings.command_topic], compacted=True
        )
        follower = CommandFollower(
            manager,
            load,
            bootstrap=settings.kafka_bootstrap_servers,
            topic=settings.command_topic,
            group_id=settings.group_id,
            session_timeout_ms=settings.group_session_timeout_ms,
        )
        follower_task = asyncio.create_task(follower.run())

        def _follower_done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                logging.getLogger("producers").error(
                    "group membership failed: %r", task.exception()
                )
                stop.set()

        follower_task.add_done_callback(_follower_done)
    health = None
    if settings.health_port:
        health = await serve_health(
            manager, settings.health_port, lambda: follower is None or follower.joined.is_set()
        )
    logging.getLogger("producers").info(
        "producer %s watching %d mailbox(es)%s",
        settings.instance_id,
        len(mailboxes),
        f" and group {settings.group_id}" if group else "",
    )
    await stop.wait()
    gc_task.cancel()
    if follower_task is not None:
        follower_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower_task
    if health is not None:
        await health.cleanup()
    await manager.shutdown()
    if pool is not None:
        await pool.close()
    if tracing is not None:
        tracing.shutdown()
    if metering is not None:
        metering.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    if not args.group and not args.mailboxes and not (args.tenant and args.host and args.username):
        _parser().error("give --group, --mailboxes FILE, or --tenant, --host and --username")
    try:
        mailboxes = _load_mailboxes(args)
    except ValidationError as exc:
        print(f"error: invalid mailbox configuration:\n{exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(mailboxes, args.group))


if __name__ == "__main__":
    sys.exit(main())
