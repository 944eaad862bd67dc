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
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from producers import telemetry
from producers.checkpoint import CheckpointStore
from producers.config import MailboxConfig, ProducerSettings
from producers.credentials import SecretStore
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


async def _run(mailboxes: list[MailboxConfig]) -> int:
    settings = ProducerSettings()
    tracing = telemetry.setup("idlewire-producer", settings.instance_id)
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
    if secrets is None and any(m.password is None for m in mailboxes):
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
    logging.getLogger("producers").info(
        "producer %s watching %d mailbox(es)", settings.instance_id, len(mailboxes)
    )
    await stop.wait()
    await manager.shutdown()
    if pool is not None:
        await pool.close()
    if tracing is not None:
        tracing.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)
    if not args.mailboxes and not (args.tenant and args.host and args.username):
        _parser().error("give --mailboxes FILE, or --tenant, --host and --username")
    try:
        mailboxes = _load_mailboxes(args)
    except ValidationError as exc:
        print(f"error: invalid mailbox configuration:\n{exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(mailboxes))


if __name__ == "__main__":
    sys.exit(main())
