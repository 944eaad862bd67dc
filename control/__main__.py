"""`python -m control COMMAND`: operator commands for credentials (more to come with the API).

  gen-key KEY_ID                       print a new key ring entry (KEY_ID:base64) for
                                       IDLEWIRE_CREDENTIAL_KEYS
  set-password MAILBOX_ID              store a mailbox password read from stdin
  set-oauth MAILBOX_ID --expires-in S  store OAuth tokens: JSON {"access_token", "refresh_token"}
                                       read from stdin
  rotate-keys                          re-encrypt all credentials under the primary key

Secrets are read from stdin, never from arguments (they would show in `ps` and shell history).
DATABASE_URL and IDLEWIRE_CREDENTIAL_KEYS come from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from control.credentials import PostgresSecretStore
from control.crypto import KeyRing, KeyRingError
from control.db import connect
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
        elif args.cmd == "rotate-keys":
            done, broken = await store.rotate()
            print(f"re-encrypted {done} credential(s) under key {keys.primary_id}")
            if broken:
                print(f"cannot decrypt (no matching key): {', '.join(broken)}", file=sys.stderr)
                return 1
        return 0
    finally:
        await pool.close()


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
    args = p.parse_args(argv)
    if args.cmd == "gen-key":
        print(KeyRing.generate(args.key_id))
        return 0
    return asyncio.run(_store_command(args))


if __name__ == "__main__":
    sys.exit(main())
