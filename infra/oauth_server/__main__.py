"""`python -m infra.oauth_server --issuer URL --state-dir DIR [...]`: run the authorization server
in the foreground until SIGTERM/SIGINT. Normally started detached by `infra.oauth.up()`."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

from aiohttp import web

from infra.oauth import publish_keys, write_public_key

from ._http import Context, make_app
from ._keys import load_or_create
from ._store import Store
from ._validator import MAX_LIFETIME, Settings, build_server

log = logging.getLogger("oauth_server")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m infra.oauth_server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument("--port", type=int, default=18080)
    p.add_argument("--issuer", required=True, help='the "iss" of every access token')
    p.add_argument("--audience", default="imap", help='the "aud" of every access token')
    p.add_argument("--state-dir", type=Path, required=True, help="SQLite state and signing key")
    p.add_argument(
        "--dovecot-keys-dir",
        type=Path,
        help="Dovecot's local_validation_key_dict directory: the public key is written there",
    )
    p.add_argument(
        "--access-token-lifetime",
        type=int,
        default=3600,
        help="default access-token lifetime in seconds (clients and requests may override it)",
    )
    args = p.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        p.error("--host must be a loopback address: the admin API has no authentication")
    if not 1 <= args.access_token_lifetime <= MAX_LIFETIME:
        p.error(f"--access-token-lifetime must be from 1 to {MAX_LIFETIME}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir / "state.sqlite3")
    key = load_or_create(state_dir)
    write_public_key(state_dir, key.kid, key.public_pem)
    settings = Settings(
        issuer=args.issuer,
        audience=args.audience,
        access_token_lifetime=args.access_token_lifetime,
    )

    def publish() -> None:
        if args.dovecot_keys_dir is not None:
            for path in publish_keys(state_dir, args.dovecot_keys_dir):
                log.info("public key published for Dovecot: %s", path)

    publish()
    server, validator = build_server(store, key, settings)
    app = make_app(Context(server, validator, store, key, settings, on_client_change=publish))
    log.info(
        "listening on http://%s:%d issuer=%s kid=%s default access-token lifetime=%ds",
        args.host,
        args.port,
        settings.issuer,
        key.kid,
        settings.access_token_lifetime,
    )
    # shutdown_timeout: a test that stops the server to simulate an outage should not wait for
    # idle keep-alive connections to drain.
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=1.0)
    store.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
