"""`python -m infra COMMAND`: the local stack (Kafka, PostgreSQL, Dovecot, OAuth) on loopback.

  up                      install what is missing, start all four (idempotent), print KEY=value
  down                    stop all four (data is kept)
  reset                   stop all four and delete their data
  status                  say which are running
  env                     print KEY=value settings without starting anything
  add-user USER PASSWORD  create (or update) an IMAP user
  add-users PREFIX N PASSWORD   create PREFIX1..PREFIXN in bulk
  deliver USER [FILE]     deliver a message (FILE, or stdin) into USER's INBOX
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra import dovecot, kafka, oauth, postgres

# Order matters: the OAuth server publishes its public key into Dovecot's key directory.
SERVICES = {"kafka": kafka, "postgres": postgres, "dovecot": dovecot, "oauth": oauth}


def _print_env(settings: dict[str, str]) -> None:
    for key, value in settings.items():
        print(f"{key}={value}")


def up() -> dict[str, str]:
    settings: dict[str, str] = {}
    for module in SERVICES.values():
        module.ensure_installed()
        settings.update(module.up())
    return settings


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, args = argv[0], argv[1:]
    if cmd == "up":
        _print_env(up())
    elif cmd == "down":
        for module in SERVICES.values():
            module.down()
    elif cmd == "reset":
        for module in SERVICES.values():
            module.reset() if hasattr(module, "reset") else module.down()
    elif cmd == "status":
        for name, module in SERVICES.items():
            print(f"{name}: {'running' if module.is_running() else 'stopped'}")
    elif cmd == "env":
        _print_env(env())
    elif cmd == "add-user" and len(args) == 2:
        dovecot.add_user(args[0], args[1])
    elif cmd == "add-users" and len(args) == 3:
        users = dovecot.add_users(args[0], int(args[1]), args[2])
        print(f"{len(users)} users", file=sys.stderr)
    elif cmd == "deliver" and len(args) in (1, 2):
        data = Path(args[1]).read_bytes() if len(args) == 2 else sys.stdin.buffer.read()
        dovecot.deliver(args[0], data)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


def env() -> dict[str, str]:
    from infra import _common as c

    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"{c.HOST}:{c.KAFKA_PORT}",
        "DATABASE_URL": f"postgresql://idlewire:idlewire@{c.HOST}:{c.POSTGRES_PORT}/idlewire",
        "IMAP_HOST": c.HOST,
        "IMAP_PORT": str(c.IMAP_PORT),
        "IMAPS_PORT": str(c.IMAPS_PORT),
        "IMAP_CA_FILE": str(dovecot.ca_file()),
        **oauth.settings(),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
